"""Compare found files with the database: new, changed or unchanged, and whether to classify.

A file is the same file while its size and mtime are. It is classified again when it changed, when
it has no prediction from the current model (a new model was installed), when a previous run left
it pending, or when forced. Files that failed stay failed until they change (or ``--force``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from genretag.db import store
from genretag.producer.walk import FoundFile


class Change(str, enum.Enum):
    new = "new"
    changed = "changed"
    unchanged = "unchanged"


@dataclass(frozen=True)
class Decision:
    change: Change
    queue: bool
    reset_attempts: bool = False  # a different file or a new model: earlier failures do not count
    restore_done: bool = False  # was missing, is back unchanged, and still tagged by this model


def decide(found: FoundFile, known: store.KnownTrack | None, force: bool = False) -> Decision:
    if known is None:
        return Decision(Change.new, queue=True)
    if known.size != found.size or known.mtime != found.mtime:
        return Decision(Change.changed, queue=True, reset_attempts=True)
    if force:
        return Decision(Change.unchanged, queue=True, reset_attempts=True)
    if known.status == store.PENDING:
        return Decision(Change.unchanged, queue=True)
    if known.status == store.FAILED:
        return Decision(Change.unchanged, queue=False)
    if known.current:
        return Decision(Change.unchanged, queue=False, restore_done=known.status == store.MISSING)
    return Decision(Change.unchanged, queue=True, reset_attempts=True)  # tagged by an older model


@dataclass
class BatchPlan:
    """What one batch of found files amounts to: counts, and the track ids to classify."""

    counts: dict[str, int] = field(default_factory=lambda: {c.value: 0 for c in Change})
    to_queue: list[int] = field(default_factory=list)  # filled only when the plan is written
    queue_count: int = 0
    matched_present: int = 0  # known, not missing (a dry run counts missing files from this)


def plan_batch(
    session: Session, scan_id: int | None, batch: Sequence[FoundFile], model_version: str, force: bool, write: bool
) -> BatchPlan:
    """Decide every file of ``batch`` and, when ``write``, record the decisions (new rows, pending, seen)."""
    known = store.known_tracks(session, [f.path for f in batch], model_version)
    plan = BatchPlan()
    new_rows, requeue_rows, seen, restored, queue_ids = [], [], [], [], []
    for found in batch:
        track = known.get(found.path)
        decision = decide(found, track, force)
        plan.counts[decision.change.value] += 1
        if track is not None and track.status != store.MISSING:
            plan.matched_present += 1
        if track is None:
            new_rows.append({"path": found.path, "size": found.size, "mtime": found.mtime})
        elif decision.queue:
            row = {"id": track.id, "size": found.size, "mtime": found.mtime}
            if decision.reset_attempts:
                row["attempts"] = 0
            requeue_rows.append(row)
            queue_ids.append(track.id)
        else:
            seen.append(track.id)
            if decision.restore_done:
                restored.append(track.id)
    plan.queue_count = len(new_rows) + len(queue_ids)
    if not write:
        return plan
    queue_ids += store.insert_tracks(session, new_rows, scan_id).values()
    for uniform in ([r for r in requeue_rows if "attempts" in r], [r for r in requeue_rows if "attempts" not in r]):
        store.requeue_tracks(session, uniform, scan_id)
    store.touch_tracks(session, seen, scan_id, restore_done=restored)
    plan.to_queue = queue_ids
    return plan
