"""The files' own tags on each track: genre, artist, album artist, album, title.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TAG_COLUMNS = ("tag_genre", "tag_artist", "tag_album_artist", "tag_album", "tag_title")


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        for name in TAG_COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))
    op.create_index("ix_tracks_tag_genre", "tracks", ["tag_genre"])


def downgrade() -> None:
    op.drop_index("ix_tracks_tag_genre", table_name="tracks")
    with op.batch_alter_table("tracks") as batch:
        for name in reversed(TAG_COLUMNS):
            batch.drop_column(name)
