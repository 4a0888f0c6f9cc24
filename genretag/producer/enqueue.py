"""Send pending tracks to Celery workers, with back-pressure measured in the database.

Outstanding work is the number of tracks this scan queued that are still pending: the database is
the truth about what is finished, whatever the broker holds or lost. The producer sends only while
fewer than ``max_outstanding`` are outstanding. If nothing finishes for longer than a task may run
(so no worker holds any of them), the messages are taken as lost and the tracks are sent again;
idempotent writes and attempt counting make a duplicate harmless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from genretag.config import Settings
from genretag.db import session_scope, store

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
STALL_MARGIN_SECONDS = 60


class ScanStalled(RuntimeError):
    """Queued tasks stopped finishing and resending them did not help."""


class CeleryDispatcher:
    def __init__(self, settings: Settings, scan_id: int, on_progress: Callable[[int], None] | None = None) -> None:
        from genretag.worker.app import configure
        from genretag.worker.tasks import classify_track

        configure(settings)
        self.settings = settings
        self.scan_id = scan_id
        self.task = classify_track
        self.on_progress = on_progress or (lambda outstanding: None)
        self.stall_seconds = settings.task_time_limit + STALL_MARGIN_SECONDS
        self._last_outstanding = -1
        self._last_change = time.monotonic()
        self._resends = 0
        self._warn_without_workers()

    def __enter__(self) -> CeleryDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def _warn_without_workers(self) -> None:
        """Say so up front when no worker listens on the queue (tasks then wait in the broker)."""
        from genretag.worker.app import app

        try:
            replies = app.control.inspect(timeout=1.0).active_queues() or {}
        except Exception as exc:  # noqa: BLE001 - only a hint; sending reports real broker errors
            log.debug("could not ask workers for their queues: %s", exc)
            return
        if not any(q.get("name") == self.settings.task_queue for queues in replies.values() for q in queues):
            log.warning("no worker is consuming queue %r yet: tasks wait in the broker until one starts "
                        "(genretag worker)", self.settings.task_queue)

    def submit(self, track_ids: Iterable[int]) -> None:
        """Send tracks as room frees up; blocks while ``max_outstanding`` are unfinished."""
        ids = list(track_ids)
        while ids:
            room = self.settings.max_outstanding - self._wait(lambda n: n < self.settings.max_outstanding)
            chunk, ids = ids[:room], ids[room:]
            self._send(chunk)

    def drain(self) -> None:
        """Wait until every track this scan queued is done or failed."""
        self._wait(lambda n: n == 0)

    def _send(self, track_ids: list[int]) -> None:
        with session_scope(self.settings.database_url) as session:
            store.mark_queued(session, track_ids, self.scan_id)
        self._publish(track_ids)

    def _publish(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            self.task.apply_async((track_id, self.scan_id), queue=self.settings.task_queue)

    def _wait(self, enough: Callable[[int], bool]) -> int:
        """Poll the outstanding count until ``enough(count)``; resend after a stall."""
        while True:
            with session_scope(self.settings.database_url) as session:
                count = store.outstanding(session, self.scan_id)
            if count != self._last_outstanding:
                self._last_outstanding, self._last_change, self._resends = count, time.monotonic(), 0
                self.on_progress(count)
            if enough(count):
                return count
            if time.monotonic() - self._last_change > self.stall_seconds:
                self._resend_stalled()
            time.sleep(POLL_SECONDS)

    def _resend_stalled(self) -> None:
        self._resends += 1
        if self._resends > self.settings.max_attempts:
            raise ScanStalled(
                f"no task of scan {self.scan_id} finished in {self._resends * self.stall_seconds} s despite "
                f"{self._resends - 1} resends: is a worker consuming queue {self.settings.task_queue!r}? "
                "Unfinished tracks stay pending; the next scan queues them again."
            )
        with session_scope(self.settings.database_url) as session:
            ids = store.pending_queued(session, self.scan_id)
        log.warning(
            "no task finished for %d s: sending the %d unfinished tracks again (broker lost them, or no worker runs)",
            self.stall_seconds, len(ids),
        )
        self._publish(ids)
        self._last_change = time.monotonic()
