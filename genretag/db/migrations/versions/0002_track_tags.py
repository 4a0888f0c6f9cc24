"""The files' own tags on each track (genre, artist, album artist, album, title), and the tag writer's log.

``tag_writes`` records every genre ``genretag tag --write`` put into a file, with the values it
replaced, so ``--undo`` can restore them. ``predictions.genre`` widens from 32 to 128 characters:
a model trained on a library's own tags has labels as long as its users wrote them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TAG_COLUMNS = ("tag_genre", "tag_artist", "tag_album_artist", "tag_album", "tag_title")
JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
PathText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("tracks") as batch:
        for name in TAG_COLUMNS:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))
    op.create_index("ix_tracks_tag_genre", "tracks", ["tag_genre"])
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("genre", existing_type=sa.String(32), type_=sa.String(128), existing_nullable=False)
    op.create_table(
        "tag_writes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("track_id", sa.Integer(), sa.ForeignKey("tracks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("path", PathText, nullable=False),
        sa.Column("written", sa.Text(), nullable=False),
        sa.Column("previous", JSONDoc, nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_tag_writes_track", "tag_writes", ["track_id"])
    op.create_index("ix_tag_writes_path", "tag_writes", ["path"])


def downgrade() -> None:
    op.drop_index("ix_tag_writes_path", table_name="tag_writes")
    op.drop_index("ix_tag_writes_track", table_name="tag_writes")
    op.drop_table("tag_writes")
    with op.batch_alter_table("predictions") as batch:
        batch.alter_column("genre", existing_type=sa.String(128), type_=sa.String(32), existing_nullable=False)
    op.drop_index("ix_tracks_tag_genre", table_name="tracks")
    with op.batch_alter_table("tracks") as batch:
        for name in reversed(TAG_COLUMNS):
            batch.drop_column(name)
