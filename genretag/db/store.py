"""Every write to the library database, shared by the producer, local mode and the Celery task.

Functions take an open :class:`~sqlalchemy.orm.Session` and leave committing to the caller, so a
caller can group writes (a producer batch) or commit each one (a worker task). Upserts use the
dialect's ``INSERT .. ON CONFLICT``, so repeated deliveries of the same task leave one row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from genretag.db.models import Prediction, ScanRun, TagWrite, Track, TrackStatus, utcnow

if TYPE_CHECKING:  # classify pulls in librosa; the database layer should not
    from genretag.classify import TrackResult
    from genretag.tags import FileTags, Written

PENDING, DONE, FAILED, MISSING = (s.value for s in TrackStatus)


def under_root(column: ColumnElement[str], root: str) -> ColumnElement[bool]:
    """``column`` names a path inside directory ``root``: an index range scan on both databases.

    Paths compare byte-wise (SQLite's BINARY collation, collation "C" on PostgreSQL), so every
    path starting with ``root/`` sorts in ``[root/, root0)``: ``'0'`` is the character after ``'/'``.
    """
    base = root.rstrip("/")
    return and_(column >= base + "/", column < base + "0")


def _dialect_insert(session: Session, table):
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts are written for SQLite and PostgreSQL, not {name}")


# --- outcomes of classification -------------------------------------------------------------


def record_prediction(session: Session, track_id: int, result: TrackResult) -> None:
    """Store ``result`` as the track's prediction for its model version, make it the track's current one, mark it done."""
    values = {
        "track_id": track_id,
        "model_version": result.model_version,
        "genre": result.genre,
        "confidence": result.confidence,
        "vote_share": result.vote_share,
        "uncertain": result.uncertain,
        "runner_up": result.runner_up,
        "mean_probability": result.mean_probability,
        "probabilities": result.probabilities,
        "votes": result.votes,
        "segments_used": result.segments_used,
        "segment_mode": result.segment_mode,
        "created_at": utcnow(),
    }
    stmt = _dialect_insert(session, Prediction).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Prediction.track_id, Prediction.model_version],
        set_={k: stmt.excluded[k] for k in values if k not in ("track_id", "model_version")},
    )
    prediction_id = session.execute(stmt.returning(Prediction.id)).scalar_one()
    session.execute(
        update(Track)
        .where(Track.id == track_id)
        .values(status=DONE, error=None, duration=result.duration, format=result.format,
                current_prediction_id=prediction_id, updated_at=utcnow())
    )


def record_failure(session: Session, track_id: int, reason: str) -> None:
    """Mark the track failed with a short reason meant for people (``AudioError.reason``)."""
    session.execute(
        update(Track).where(Track.id == track_id).values(status=FAILED, error=reason, updated_at=utcnow())
    )


def record_tags(session: Session, track_id: int, tags: FileTags) -> None:
    """Store the tags read from the track's file (absent fields become NULL)."""
    session.execute(update(Track).where(Track.id == track_id).values(**tags.columns()))


# --- the tag writer's log (genretag tag) -----------------------------------------------------


def record_tag_write(session: Session, track_id: int, written: Written, model_version: str | None) -> None:
    """Log a genre written into a file and give the track the file's new size, mtime and genre tag.

    The new size and mtime are what the next scan's diff compares, so the rewrite queues nothing.
    """
    session.add(TagWrite(track_id=track_id, path=written.path, written=written.genre, previous=written.previous,
                         model_version=model_version, written_at=utcnow()))
    session.execute(
        update(Track).where(Track.id == track_id)
        .values(size=written.size, mtime=written.mtime, tag_genre=written.tag_genre)
    )


def record_tag_undo(session: Session, write_id: int, track_id: int, restored: Written | None) -> None:
    """Mark a logged write undone; ``restored`` (the file rewritten) updates the track as a write does."""
    session.execute(update(TagWrite).where(TagWrite.id == write_id).values(undone_at=utcnow()))
    if restored is not None:
        session.execute(
            update(Track).where(Track.id == track_id)
            .values(size=restored.size, mtime=restored.mtime, tag_genre=restored.tag_genre)
        )


@dataclass(frozen=True)
class Claim:
    """A pending track a worker may now process: its attempt has been counted."""

    track_id: int
    path: str
    attempt: int


def claim(session: Session, track_id: int, max_attempts: int) -> Claim | None:
    """Count one attempt at a pending track, before any work, and say whether to go on.

    Returns ``None`` when the track is no longer pending (a duplicate delivery, or a rescan found
    it gone) or when this attempt is one too many: the earlier ones never recorded an outcome, so
    they killed or timed out their worker, and the track is marked failed instead of looping.
    """
    row = session.execute(
        update(Track)
        .where(Track.id == track_id, Track.status == PENDING)
        .values(attempts=Track.attempts + 1, updated_at=utcnow())
        .returning(Track.path, Track.attempts)
    ).one_or_none()
    if row is None:
        return None
    path, attempt = row
    if attempt > max_attempts:
        record_failure(
            session, track_id, f"gave up after {attempt - 1} attempts: the worker died or timed out each time"
        )
        return None
    return Claim(track_id, path, attempt)


def release(session: Session, track_ids: Sequence[int]) -> None:
    """Give back the attempts of claimed tracks whose work was interrupted (not their fault)."""
    if track_ids:
        session.execute(
            update(Track)
            .where(Track.id.in_(track_ids), Track.status == PENDING, Track.attempts > 0)
            .values(attempts=Track.attempts - 1)
        )


# --- scan runs --------------------------------------------------------------------------------


def start_scan(session: Session, root: str, model_version: str, mode: str) -> ScanRun:
    run = ScanRun(root=root, model_version=model_version, mode=mode, started_at=utcnow())
    session.add(run)
    session.flush()
    return run


def finish_scan(session: Session, scan_id: int, **counts: int) -> ScanRun:
    """Store the final counts (found, new, changed, unchanged, missing, queued, done, failed)."""
    run = session.get(ScanRun, scan_id)
    for name, value in counts.items():
        setattr(run, name, value)
    run.finished_at = utcnow()
    session.flush()
    return run


def scan_root(session: Session, scan_id: int) -> str | None:
    return session.scalar(select(ScanRun.root).where(ScanRun.id == scan_id))


# --- diff helpers for the producer ------------------------------------------------------------


@dataclass(frozen=True)
class KnownTrack:
    """What the database knows about a path, enough to decide whether to classify it again."""

    id: int
    size: int
    mtime: float
    status: str
    current: bool  # has a prediction from the current model version


def known_tracks(session: Session, paths: Sequence[str], model_version: str) -> dict[str, KnownTrack]:
    """The database's view of ``paths`` (one query per call; callers pass a batch)."""
    current = (
        select(Prediction.id)
        .where(Prediction.track_id == Track.id, Prediction.model_version == model_version)
        .exists()
        .label("current")
    )
    rows = session.execute(
        select(Track.id, Track.path, Track.size, Track.mtime, Track.status, current).where(Track.path.in_(paths))
    )
    return {r.path: KnownTrack(r.id, r.size, r.mtime, r.status, bool(r.current)) for r in rows}


def insert_tracks(session: Session, rows: Sequence[dict], scan_id: int) -> dict[str, int]:
    """Add new files as pending tracks (``path``, ``size``, ``mtime`` per row); returns path -> id.

    ``ON CONFLICT DO NOTHING`` lets two producers race on the same file without an error.
    """
    if not rows:
        return {}
    now = utcnow()
    values = [
        {**r, "status": PENDING, "attempts": 0, "last_seen_scan_id": scan_id, "created_at": now, "updated_at": now}
        for r in rows
    ]
    session.execute(_dialect_insert(session, Track).on_conflict_do_nothing(index_elements=[Track.path]), values)
    paths = [r["path"] for r in rows]
    return dict(session.execute(select(Track.path, Track.id).where(Track.path.in_(paths))).tuples().all())


def requeue_tracks(session: Session, rows: Sequence[dict], scan_id: int) -> None:
    """Set known tracks pending again; each row has ``id``, ``size``, ``mtime`` and ``attempts``."""
    if rows:
        now = utcnow()
        session.execute(
            update(Track),
            [{**r, "status": PENDING, "error": None, "last_seen_scan_id": scan_id, "updated_at": now} for r in rows],
        )


def touch_tracks(session: Session, track_ids: Iterable[int], scan_id: int, restore_done: Iterable[int] = ()) -> None:
    """Note that this scan saw unchanged tracks; ``restore_done`` were missing and are back, still tagged."""
    ids = list(track_ids)
    if ids:
        session.execute(update(Track).where(Track.id.in_(ids)).values(last_seen_scan_id=scan_id))
    back = list(restore_done)
    if back:
        session.execute(update(Track).where(Track.id.in_(back)).values(status=DONE, updated_at=utcnow()))


def mark_missing(session: Session, root: str, scan_id: int) -> int:
    """Tracks under ``root`` this scan did not see become missing; returns how many."""
    result = session.execute(
        update(Track)
        .where(
            under_root(Track.path, root),
            Track.status != MISSING,
            (Track.last_seen_scan_id != scan_id) | Track.last_seen_scan_id.is_(None),
        )
        .values(status=MISSING, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def count_present(session: Session, root: str) -> int:
    """Tracks under ``root`` not marked missing (a dry run's baseline for counting missing files)."""
    return session.scalar(
        select(func.count()).select_from(Track).where(under_root(Track.path, root), Track.status != MISSING)
    )


def mark_queued(session: Session, track_ids: Sequence[int], scan_id: int) -> None:
    """Tag tracks as sent to workers by ``scan_id`` (what :func:`outstanding` counts)."""
    if track_ids:
        session.execute(update(Track).where(Track.id.in_(track_ids)).values(queued_scan_id=scan_id))


def outstanding(session: Session, scan_id: int) -> int:
    """Tracks this scan queued that no worker has finished yet."""
    return session.scalar(
        select(func.count()).select_from(Track).where(Track.queued_scan_id == scan_id, Track.status == PENDING)
    )


def pending_queued(session: Session, scan_id: int) -> list[int]:
    """Ids of the tracks :func:`outstanding` counts (to send again after a stall)."""
    return list(session.scalars(select(Track.id).where(Track.queued_scan_id == scan_id, Track.status == PENDING)))


def scan_outcome(session: Session, scan_id: int) -> dict[str, int]:
    """How the tracks this scan queued ended: counts per status."""
    rows = session.execute(
        select(Track.status, func.count()).where(Track.queued_scan_id == scan_id).group_by(Track.status)
    )
    return dict(rows.tuples().all())


def scan_failures(session: Session, scan_id: int, limit: int = 10) -> list[tuple[str, str]]:
    """(path, reason) of tracks this scan queued that failed."""
    rows = session.execute(
        select(Track.path, Track.error)
        .where(Track.queued_scan_id == scan_id, Track.status == FAILED)
        .order_by(Track.path)
        .limit(limit)
    )
    return list(rows.tuples())
