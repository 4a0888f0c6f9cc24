"""Embedded local mode: classify in-process, no broker, no servers.

A pool of spawned processes decodes and computes MFCCs (:func:`genretag.classify.prepare`, no
model, nothing forked from a process that holds an interpreter's threads). This process loads the
model (one LiteRT interpreter) once and runs one forward pass per batch of ``batch_tracks`` prepared tracks; a track whose
staged vote is still open goes back to the pool for its next stage. Outcomes go through the same
:mod:`genretag.worker.job` functions as the Celery task. At most a few tracks per decoder are in
flight, so memory stays flat whatever the library's size.

If a decoder process dies (a crashing codec), or no decode finishes within ``task_time_limit``
(a hanging one, whose processes are then killed), the pool is rebuilt and the tracks that were in
flight are retried one at a time; the one that crashes or hangs alone is recorded failed.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from genretag import features
from genretag.audio import AudioError
from genretag.classify import Classifier, PreparedTrack, TrackResult, Unsettled, prepare
from genretag.config import Settings
from genretag.db import session_scope, store
from genretag.features import FeatureParams
from genretag.worker import job

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def loaded_classifier(settings: Settings, model_mtime_ns: int) -> Classifier:
    """The classifier for ``settings``, kept between scans in one process (a scheduler, tests).

    Keyed by the model file's mtime too, so a model replaced in place is loaded afresh. Its interpreter
    takes every core (``threads_alone``): the decoders wait on it when the network is the bottleneck
    (musicnn: 25 tracks in 9.2 s against 13.9 s with one thread; the MFCC CNN: no change; bench/README.md, 5 Dec, cut 2).
    """
    return Classifier.load(settings, threads=settings.threads_alone)


def start_decoder() -> None:
    """A decode process: Ctrl-C is for the main process, which stops the pool and gives back unfinished
    attempts; and one BLAS thread, as the decoders share the cores with each other and the model."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    features.one_blas_thread()


class LocalRunner:
    """Takes track ids (already pending in the database) and classifies them with a process pool."""

    def __init__(self, settings: Settings, scan_id: int, on_finish: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.scan_id = scan_id
        self.on_finish = on_finish or (lambda status: None)
        self.limit = 2 * settings.worker_count + settings.batch_tracks
        self._pool: ProcessPoolExecutor | None = None
        self._classifier: Classifier | None = None
        self._inflight: dict[Future, tuple[store.Claim, Unsettled | None]] = {}  # claim, stage asked for
        self._ready: list[tuple[store.Claim, PreparedTrack]] = []

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if exc_type is not None:  # interrupted (Ctrl-C): unfinished tracks keep their attempt budget
            unfinished = [c.track_id for c, _ in self._inflight.values()] + [c.track_id for c, _ in self._ready]
            with session_scope(self.settings.database_url) as session:
                store.release(session, unfinished)

    # --- feeding ---------------------------------------------------------------------------

    def submit(self, track_ids: Iterable[int]) -> None:
        """Queue tracks, blocking while ``limit`` are in flight."""
        ids = list(track_ids)
        with session_scope(self.settings.database_url) as session:
            store.mark_queued(session, ids, self.scan_id)
        for track_id in ids:
            while len(self._inflight) >= self.limit:
                self._collect()
            with session_scope(self.settings.database_url) as session:
                claim = job.start(session, track_id, self.scan_id, self.settings)
            if claim is None:
                self.on_finish("skipped")
                continue
            self._prepare(claim)

    def drain(self) -> None:
        """Wait for every submitted track, and every later stage they need, and record the last batches."""
        while self._inflight or self._ready:
            while self._inflight:
                self._collect()
            self._decide()

    def _prepare(self, claim: store.Claim, after: Unsettled | None = None) -> None:
        self._inflight[self.pool.submit(prepare, claim.path, self.settings, self.features, after)] = (claim, after)

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.settings.worker_count, mp_context=multiprocessing.get_context("spawn"), initializer=start_decoder
            )
        return self._pool

    @property
    def classifier(self) -> Classifier:
        """Loaded on first use, so a scan with nothing to do never loads the model."""
        if self._classifier is None:
            self._classifier = loaded_classifier(self.settings, os.stat(self.settings.model_path).st_mtime_ns)
        return self._classifier

    @property
    def features(self) -> FeatureParams:
        """The feature kind and parameters the bundle needs: what the decode processes compute, at its rate."""
        return self.classifier.bundle.features

    # --- collecting ------------------------------------------------------------------------

    def _collect(self) -> None:
        done, _ = wait(list(self._inflight), timeout=self.settings.task_time_limit, return_when=FIRST_COMPLETED)
        if not done:  # no decode finished for a whole task time limit: a decoder hangs
            log.warning("no decode finished in %d s; stopping the decoders", self.settings.task_time_limit)
            self._kill_pool()
            self._isolate_crash("a decoder hung")  # the killed pool's futures are never waited on
            if len(self._ready) >= self.settings.batch_tracks:
                self._decide()
            return
        broken = False
        failures: list[tuple[int, AudioError]] = []
        for future in done:
            claim, after = self._inflight.pop(future)
            try:
                prepared = future.result()
            except BrokenProcessPool:
                broken = True
                self._inflight[future] = (claim, after)  # retried in isolation below
                continue
            except AudioError as exc:
                failures.append((claim.track_id, exc))
                continue
            except Exception as exc:  # noqa: BLE001 - recorded, the scan goes on
                failures.append((claim.track_id, job.failure_of(claim.path, exc)))
                continue
            self._ready.append((claim, prepared))
        self._record(failures)
        if broken:
            self._isolate_crash("a decoder process died")
        if len(self._ready) >= self.settings.batch_tracks:
            self._decide()

    def _isolate_crash(self, what: str) -> None:
        """A decoder died or hung: rebuild the pool and retry each in-flight track alone to find the culprit."""
        suspects = list(self._inflight.values())
        self._inflight.clear()
        log.warning("%s; retrying %d tracks one at a time", what, len(suspects))
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        for claim, after in suspects:
            try:
                prepared = self.pool.submit(prepare, claim.path, self.settings, self.features, after).result(
                    timeout=self.settings.task_time_limit
                )
            except TimeoutError:
                self._kill_pool()
                outcome = AudioError(claim.path, f"timed out: decoding took longer than {self.settings.task_time_limit} s")
            except BrokenProcessPool:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None
                outcome = AudioError(claim.path, "the decoder crashed its process on this file")
            except AudioError as exc:
                outcome = exc
            except Exception as exc:  # noqa: BLE001
                outcome = job.failure_of(claim.path, exc)
            else:
                self._ready.append((claim, prepared))
                continue
            self._record([(claim.track_id, outcome)])

    def _kill_pool(self) -> None:
        """End a pool whose decoders hang, without waiting on it: the executor's own shutdown could wait
        for ever on a worker killed while it started (seen in CI), so the processes are killed and reaped
        here and the pool is dropped.

        A decoder killed while it wrote its result leaves half a message in the result pipe, and the
        executor's manager thread then waits for the rest for ever, which hung the interpreter's exit
        (it joins that thread; seen in a test run). Closing this process's end of the pipe, the last
        writer once the decoders are dead, gives that read an end of file, so the thread ends.
        """
        processes = list(self._pool._processes.values())  # no public API before Python 3.14
        results = self._pool._result_queue
        for process in processes:
            process.kill()
        for process in processes:
            process.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        results._writer.close()
        self._pool = None

    def _decide(self) -> None:
        if not self._ready:
            return
        claims = [c for c, _ in self._ready]
        results = self.classifier.decide([t for _, t in self._ready])
        self._ready = []
        for claim, outcome in zip(claims, results):
            if isinstance(outcome, Unsettled):
                self._prepare(claim, outcome)
        self._record([(c.track_id, r) for c, r in zip(claims, results) if isinstance(r, TrackResult)])

    def _record(self, outcomes: list[tuple[int, TrackResult | AudioError]]) -> None:
        if not outcomes:
            return
        statuses = job.record(self.settings.database_url, outcomes)
        for status in statuses:
            self.on_finish(status)
