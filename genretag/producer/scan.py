"""One scan of a library root: walk, diff against the database, classify what needs it, record the run.

The walk is streamed in batches of ``DB_BATCH`` files: each batch is diffed in one query,
committed, and its work handed to a dispatcher (Celery workers, or the embedded local runner)
that blocks when enough is in flight. Memory stays flat whatever the size of the library.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from genretag.config import Settings
from genretag.db import session_scope, store
from genretag.bundle import read_meta
from genretag.producer.diff import plan_batch
from genretag.producer.walk import FoundFile, walk
from genretag.worker.job import is_inside

DB_BATCH = 500


class ScanRefused(ValueError):
    """The root cannot be scanned as asked; nothing was written."""


@dataclass
class ScanCounts:
    found: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    missing: int = 0
    queued: int = 0
    done: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ScanSummary:
    root: str
    scan_id: int | None  # None for a dry run, which writes nothing
    mode: str  # "local", "celery" or "dry-run"
    model_version: str
    counts: ScanCounts


def batched(files: Iterator[FoundFile], size: int) -> Iterator[list[FoundFile]]:
    while batch := list(itertools.islice(files, size)):
        yield batch


def scan(
    root: str | os.PathLike[str],
    settings: Settings,
    *,
    dry_run: bool = False,
    force: bool = False,
    wait: bool = True,
    progress: Callable[[ScanCounts], None] | None = None,
) -> ScanSummary:
    """Scan ``root`` and classify new, changed and stale tracks (locally, or through Celery).

    ``dry_run`` only counts. ``wait=False`` (Celery mode) returns once everything is queued; the
    run's done and failed counts then stay 0 and the workers finish on their own.
    """
    root = os.path.realpath(os.path.expanduser(os.fspath(root)))
    if not os.path.isdir(root):
        raise ScanRefused(f"not a directory: {root}")
    if not os.access(root, os.R_OK | os.X_OK):  # else every known track under it would turn "missing"
        raise ScanRefused(f"cannot list {root}: permission denied")
    if settings.library_roots and not is_inside(root, settings.library_roots, settings.follow_symlinks):
        raise ScanRefused(f"{root} is not under the configured library roots {', '.join(settings.library_roots)} "
                          "(workers would refuse its files)")
    model_version = read_meta(settings.model_path)["version"]
    report = progress or (lambda counts: None)
    counts = ScanCounts()
    files = walk(root, settings.follow_symlinks)
    if dry_run:
        return _dry_run(root, settings, files, model_version, force, counts, report)

    mode = "local" if settings.local_mode else "celery"
    with session_scope(settings.database_url) as session:
        scan_id = store.start_scan(session, root, model_version, mode).id
    with _dispatcher(settings, scan_id, counts, report) as dispatcher:
        for batch in batched(files, DB_BATCH):
            with session_scope(settings.database_url) as session:
                plan = plan_batch(session, scan_id, batch, model_version, force, write=True)
            _add(counts, plan.counts, found=len(batch), queued=plan.queue_count)
            report(counts)
            dispatcher.submit(plan.to_queue)
        with session_scope(settings.database_url) as session:
            counts.missing = store.mark_missing(session, root, scan_id)
        report(counts)
        if wait or settings.local_mode:
            dispatcher.drain()
    with session_scope(settings.database_url) as session:
        if wait or settings.local_mode:
            outcome = store.scan_outcome(session, scan_id)
            counts.done, counts.failed = outcome.get(store.DONE, 0), outcome.get(store.FAILED, 0)
        store.finish_scan(session, scan_id, **counts.as_dict())
    report(counts)
    return ScanSummary(root, scan_id, mode, model_version, counts)


def _dry_run(root, settings, files, model_version, force, counts, report) -> ScanSummary:
    matched = 0
    for batch in batched(files, DB_BATCH):
        with session_scope(settings.database_url) as session:
            plan = plan_batch(session, None, batch, model_version, force, write=False)
        matched += plan.matched_present
        _add(counts, plan.counts, found=len(batch), queued=plan.queue_count)
        report(counts)
    with session_scope(settings.database_url) as session:
        counts.missing = store.count_present(session, root) - matched
    report(counts)
    return ScanSummary(root, None, "dry-run", model_version, counts)


def _add(counts: ScanCounts, changes: dict[str, int], found: int, queued: int) -> None:
    counts.found += found
    counts.queued += queued
    for name, n in changes.items():
        setattr(counts, name, getattr(counts, name) + n)


def _dispatcher(settings: Settings, scan_id: int, counts: ScanCounts, report: Callable[[ScanCounts], None]):
    """The local runner without a broker, else the Celery dispatcher; both update ``counts`` live."""
    if settings.local_mode:
        from genretag.producer.local import LocalRunner

        def finished(status: str) -> None:
            if status in (store.DONE, store.FAILED):
                setattr(counts, status, getattr(counts, status) + 1)
                report(counts)

        return LocalRunner(settings, scan_id, on_finish=finished)

    from genretag.producer.enqueue import CeleryDispatcher

    def outstanding_changed(_outstanding: int) -> None:
        with session_scope(settings.database_url) as session:
            outcome = store.scan_outcome(session, scan_id)
        counts.done, counts.failed = outcome.get(store.DONE, 0), outcome.get(store.FAILED, 0)
        report(counts)

    return CeleryDispatcher(settings, scan_id, on_progress=outstanding_changed)
