"""``genretag tag``: write the predicted genres into the files' own genre tags, or undo that.

A dry run is the default: it reads each file and says what a write would do. Writing, by default,
fills only files without a genre tag, and only with confident predictions: not flagged uncertain
by the trust step, or, for predictions it never assessed, of confidence at least ``tag_min_confidence``. Each write goes through
:func:`genretag.tags.write_genre` (a copy beside the file, fsync, atomic rename) and is logged in
``tag_writes`` with the values it replaced; the track then holds the file's new size and mtime, so
the next scan queues nothing. ``undo`` restores a logged write only while the file still carries
what was written: a tag edited since is left alone. A file that cannot be written is reported
with its reason and the run goes on. Nothing else in genretag writes to music files.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from genretag.config import Settings
from genretag.db import session_scope, store
from genretag.db.queries import TagCandidate, tag_candidates, writes_to_undo
from genretag.tags import JOIN, TagError, check_writable, genre_values, write_genre, writable_kind

log = logging.getLogger(__name__)

PAGE = 500


@dataclass(frozen=True)
class Outcome:
    """What happened (or would happen) to one file: an ``action`` and a detail for people."""

    path: str
    action: str  # "written", "would write", "restored", "would restore", "skipped", "failed"
    detail: str


@dataclass(frozen=True)
class TagPolicy:
    """Which predictions go into which files."""

    overwrite: bool = False  # replace existing genre tags too
    min_confidence: float = 0.5  # for predictions the trust step has not assessed (``uncertain`` NULL)
    include_uncertain: bool = False  # also predictions the trust step flagged uncertain
    explicit: bool = False  # min_confidence was asked for: it applies to assessed predictions too


def not_confident(candidate: TagCandidate, policy: TagPolicy) -> str | None:
    """Why ``candidate``'s prediction is not written, or ``None`` when it is confident enough.

    An assessed prediction (``uncertain`` not NULL) is judged by that flag; an unassessed one (written
    before the trust step existed) by ``min_confidence``; an explicit ``--min-confidence`` binds both.
    """
    if candidate.uncertain and not policy.include_uncertain:
        return "prediction flagged uncertain"
    if (candidate.uncertain is None or policy.explicit) and candidate.confidence < policy.min_confidence:
        return f"confidence {candidate.confidence:.2f} below {policy.min_confidence:.2f}"
    return None


def _roots(roots: Sequence[str]) -> list[str | None]:
    return [os.path.realpath(r) for r in roots] or [None]


def tag_library(
    settings: Settings, roots: Sequence[str], policy: TagPolicy, write: bool, report: Callable[[Outcome], None]
) -> Counter[str]:
    """Write (or with ``write=False`` only show) the predicted genres under ``roots`` (none: every track)."""
    counts: Counter[str] = Counter()
    for root in _roots(roots):
        after = None
        while True:
            with session_scope(settings.database_url) as session:
                page = tag_candidates(session, root, after, PAGE)
            if not page:
                break
            after = page[-1].path
            for candidate in page:
                outcome = _tag_one(settings, candidate, policy, write)
                counts[outcome.action] += 1
                report(outcome)
    return counts


def _tag_one(settings: Settings, candidate: TagCandidate, policy: TagPolicy, write: bool) -> Outcome:
    path, genre = candidate.path, candidate.genre
    reason = not_confident(candidate, policy)
    if reason:
        return Outcome(path, "skipped", reason)
    try:
        check_writable(path)
        writable_kind(path)
        current = genre_values(path)
        if current == [genre]:
            return Outcome(path, "skipped", f"already tagged {genre}")
        if current and not policy.overwrite:
            return Outcome(path, "skipped", f"has a genre tag ({JOIN.join(current)}); --overwrite replaces it")
        was = JOIN.join(current) if current else "no genre tag"
        if not write:
            return Outcome(path, "would write", f"{genre} (was: {was})")
        written = write_genre(path, [genre], only_if_absent=not policy.overwrite)
    except TagError as exc:
        return Outcome(path, "failed", exc.reason)
    with session_scope(settings.database_url) as session:
        store.record_tag_write(session, candidate.track_id, written, candidate.model_version)
    return Outcome(path, "written", f"{genre} (was: {was})")


def undo(settings: Settings, roots: Sequence[str], write: bool, report: Callable[[Outcome], None]) -> Counter[str]:
    """Restore what the logged writes under ``roots`` replaced, newest first (``write=False``: only show)."""
    counts: Counter[str] = Counter()
    for root in _roots(roots):
        with session_scope(settings.database_url) as session:
            logged = writes_to_undo(session, root)
        for entry in logged:
            outcome = _undo_one(settings, entry, write)
            counts[outcome.action] += 1
            report(outcome)
    return counts


def _undo_one(settings: Settings, entry, write: bool) -> Outcome:  # entry: queries.LoggedWrite
    before = JOIN.join(entry.previous) if entry.previous else "no genre tag"
    try:
        current = genre_values(entry.path)
    except TagError as exc:
        return Outcome(entry.path, "failed", exc.reason)
    if current == entry.previous:  # never written (a run killed before its rename), or restored by hand
        if write:
            with session_scope(settings.database_url) as session:
                store.record_tag_undo(session, entry.id, entry.track_id, None)
        return Outcome(entry.path, "skipped", f"already holds its earlier genre ({before})")
    if current != [entry.written]:
        now = JOIN.join(current) if current else "no genre tag"
        return Outcome(entry.path, "skipped", f"genre is now {now}, not the {entry.written} genretag wrote: left alone")
    if not write:
        return Outcome(entry.path, "would restore", f"{before} (now: {entry.written})")
    try:
        restored = write_genre(entry.path, entry.previous)
    except TagError as exc:
        return Outcome(entry.path, "failed", exc.reason)
    with session_scope(settings.database_url) as session:
        store.record_tag_undo(session, entry.id, entry.track_id, restored)
    return Outcome(entry.path, "restored", f"{before} (was: {entry.written})")
