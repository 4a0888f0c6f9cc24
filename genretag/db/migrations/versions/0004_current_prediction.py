"""Each track points at its current prediction, so library-wide aggregates join one row per track.

The pointer is kept by ``store.record_prediction`` in the same transaction as the prediction's upsert.
It has no foreign key: predictions are deleted only with their track (a pointer to a row deleted by
hand joins to nothing, like NULL), and adding one on SQLite would need a batch "move and copy" of
tracks, whose DROP TABLE cascades into deleting every prediction.
Existing rows are backfilled with each track's latest prediction (what ``query`` and ``stats`` showed
by default before this revision). ``ix_tracks_status_current`` lets ``stats`` and ``report`` read the
done tracks' pointers from the index alone (it replaces ``ix_tracks_status``, its prefix), and
``ix_predictions_current`` the columns they need of each prediction, so the two merge-join index-only.

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

BACKFILL = """
UPDATE tracks SET current_prediction_id = (
    SELECT p.id FROM predictions p WHERE p.track_id = tracks.id
    ORDER BY p.created_at DESC, p.id DESC LIMIT 1
)
WHERE EXISTS (SELECT 1 FROM predictions p WHERE p.track_id = tracks.id)
"""


def upgrade() -> None:
    op.add_column("tracks", sa.Column("current_prediction_id", sa.Integer(), nullable=True))
    op.execute(BACKFILL)
    op.create_index("ix_tracks_status_current", "tracks", ["status", "current_prediction_id"])
    op.drop_index("ix_tracks_status", table_name="tracks")
    op.create_index("ix_predictions_current", "predictions", ["id", "genre", "confidence", "uncertain", "model_version"])


def downgrade() -> None:
    op.drop_index("ix_predictions_current", table_name="predictions")
    op.create_index("ix_tracks_status", "tracks", ["status"])
    op.drop_index("ix_tracks_status_current", table_name="tracks")
    op.drop_column("tracks", "current_prediction_id")
