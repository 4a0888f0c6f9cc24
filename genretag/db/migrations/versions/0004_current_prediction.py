"""Each track points at its current prediction, so library-wide aggregates join nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        batch.add_column(sa.Column("current_prediction_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_tracks_current_prediction", "predictions", ["current_prediction_id"], ["id"],
                                 ondelete="SET NULL")
    op.create_index("ix_tracks_current_prediction", "tracks", ["current_prediction_id"])


def downgrade() -> None:
    op.drop_index("ix_tracks_current_prediction", table_name="tracks")
    with op.batch_alter_table("tracks") as batch:
        batch.drop_constraint("fk_tracks_current_prediction", type_="foreignkey")
        batch.drop_column("current_prediction_id")
