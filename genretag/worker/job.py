"""Classify one queued track and record the outcome: the logic the Celery task and local mode share.

The order matters for robustness: the attempt is counted (and committed) before the file is opened,
so a file that kills its process ends failed after ``max_attempts`` instead of looping; the path is
checked against the library roots before it is opened; bad audio is an outcome, not an error.
Whatever the outcome, the file's own tags are read and stored with it (:func:`record`): unreadable
tags are logged, never a failure. No Celery import here: this module is tested and used without a broker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from sqlalchemy.orm import Session

from genretag.audio import AudioError
from genretag.classify import Classifier, TrackResult
from genretag.config import Settings
from genretag.db import session_scope, store
from genretag.tags import FileTags, read_logged

log = logging.getLogger(__name__)


def is_inside(path: str, roots: Sequence[str], follow_symlinks: bool) -> bool:
    """``path`` lies under one of ``roots``; without symlink following, judged on resolved paths.

    Resolving both sides means a link inside the library that points elsewhere does not pass.
    """
    resolve = os.path.abspath if follow_symlinks else os.path.realpath
    target = resolve(path)
    for root in roots:
        base = resolve(root)
        if os.path.commonpath([target, base]) == base:
            return True
    return False


def allowed_roots(session: Session, settings: Settings, scan_id: int) -> list[str]:
    """The configured library roots, or else the root of the scan that queued the track."""
    if settings.library_roots:
        return list(settings.library_roots)
    root = store.scan_root(session, scan_id)
    return [root] if root else []


def start(session: Session, track_id: int, scan_id: int, settings: Settings) -> store.Claim | None:
    """Count the attempt and check the path; ``None`` means there is nothing (more) to do."""
    claim = store.claim(session, track_id, settings.max_attempts)
    if claim is None:
        return None
    if not is_inside(claim.path, allowed_roots(session, settings, scan_id), settings.follow_symlinks):
        store.record_failure(session, track_id, "refused: outside the configured library roots")
        return None
    return claim


def finish(session: Session, track_id: int, outcome: TrackResult | AudioError, tags: FileTags) -> str:
    """Record a prediction or a failure, and the file's tags; returns the track's new status."""
    store.record_tags(session, track_id, tags)
    if isinstance(outcome, AudioError):
        store.record_failure(session, track_id, outcome.reason)
        return store.FAILED
    store.record_prediction(session, track_id, outcome)
    return store.DONE


def record(database_url: str, outcomes: Sequence[tuple[int, TrackResult | AudioError]]) -> list[str]:
    """Read each file's tags, then record every outcome in one transaction; returns the new statuses.

    The one place a classified file's tags are read, for the Celery task and local mode alike; the
    files are read before the transaction opens, so no database lock waits on a disk.
    """
    tags = [read_logged(outcome.path) for _, outcome in outcomes]
    with session_scope(database_url) as session:
        return [finish(session, track_id, outcome, t) for (track_id, outcome), t in zip(outcomes, tags)]


def failure_of(path: str, exc: BaseException) -> AudioError:
    """An unexpected exception while classifying, as a recordable failure (the traceback goes to the log)."""
    log.error("unexpected error classifying %s", path, exc_info=exc)
    return AudioError(path, f"internal error: {type(exc).__name__}: {exc}"[:500])


def run(
    track_id: int,
    scan_id: int,
    settings: Settings,
    classifier: Classifier,
    time_limit_errors: tuple[type[BaseException], ...] = (),
) -> str:
    """Claim, classify and record one track; returns "done", "failed" or "skipped".

    Database errors propagate (the Celery task retries them); anything the file causes is recorded.
    ``time_limit_errors`` (Celery's soft time limit) are recorded as a time-out.
    """
    with session_scope(settings.database_url) as session:
        claim = start(session, track_id, scan_id, settings)
    if claim is None:
        return "skipped"
    outcome: TrackResult | AudioError
    try:
        outcome = classifier.classify(claim.path)
    except AudioError as exc:
        outcome = exc
    except time_limit_errors:
        outcome = AudioError(claim.path, f"timed out: took longer than {settings.task_soft_time_limit} s")
    except Exception as exc:  # noqa: BLE001 - a bug must not leave the track pending forever
        outcome = failure_of(claim.path, exc)
    return record(settings.database_url, [(track_id, outcome)])[0]
