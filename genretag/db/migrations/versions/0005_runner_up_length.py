"""The runner-up holds any label the genre column does: 128 characters, where 0003 gave it 64.

A bundle trained on a library's own tags (``train --from-library``) may have labels longer than 64
characters; PostgreSQL refused to store such a runner-up, so the track's prediction failed to save.
On SQLite the batch rebuilds ``predictions`` alone: nothing references it by a foreign key (the
tracks' pointer has none, 0004), so dropping the old table deletes nothing else.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("runner_up", type_=sa.String(length=128), existing_type=sa.String(length=64),
                           existing_nullable=True)


def downgrade() -> None:
    op.execute("UPDATE predictions SET runner_up = substr(runner_up, 1, 64)")
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("runner_up", type_=sa.String(length=64), existing_type=sa.String(length=128),
                           existing_nullable=True)
