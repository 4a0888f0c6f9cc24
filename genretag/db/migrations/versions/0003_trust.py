"""Calibrated predictions: the vote share in a column of its own, the uncertain flag, the runner-up.

``confidence`` now means the calibrated probability of the stored genre. Rows written before this
revision keep their old value there (the vote share), copied into ``vote_share``; their
``uncertain`` stays NULL (not assessed).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("vote_share", sa.Float(), nullable=True))
        batch.add_column(sa.Column("uncertain", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("runner_up", sa.String(length=64), nullable=True))
    op.execute("UPDATE predictions SET vote_share = confidence")
    op.create_index("ix_predictions_uncertain", "predictions", ["uncertain"])


def downgrade() -> None:
    op.drop_index("ix_predictions_uncertain", table_name="predictions")
    with op.batch_alter_table("predictions") as batch:
        for name in ("runner_up", "uncertain", "vote_share"):
            batch.drop_column(name)
