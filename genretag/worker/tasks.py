"""The Celery task: a thin wrapper over :func:`genretag.worker.job.run`.

Each worker process loads the model (one LiteRT interpreter) once, when it starts, and opens its own
database engine (connection pools must not cross the fork).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun, worker_init, worker_process_init
from sqlalchemy.exc import OperationalError

from genretag import features
from genretag.classify import Classifier
from genretag.db.engine import dispose_engines, get_engine
from genretag.worker import job
from genretag.worker.app import app, app_settings

log = logging.getLogger(__name__)

_classifier: Classifier | None = None

try:  # glibc's malloc_trim; absent on musl and macOS, where the worker just keeps its arenas
    _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):
    _trim = None


@worker_init.connect
def require_a_broker(**_: object) -> None:
    """Without a broker URL Celery would retry a default AMQP server forever; stop with the reason."""
    if app_settings().local_mode:
        raise SystemExit("genretag: GENRETAG_BROKER_URL is empty, so there is nothing for a worker to consume "
                         "(set it, e.g. redis://localhost:6379/0; without one, `genretag scan` works in-process)")


@worker_process_init.connect
def load_once_per_process(**_: object) -> None:
    """Engine and model for this child process, before it takes any task; one BLAS thread, as the
    worker's processes share the cores."""
    settings = app_settings()
    features.one_blas_thread()
    dispose_engines()
    try:
        get_engine(settings.database_url)
    except OperationalError as exc:  # database down: tasks retry until it is back
        log.warning("database not reachable at worker start (%s); tasks will retry", type(exc).__name__)
    classifier()


@task_postrun.connect
def return_freed_memory(**_: object) -> None:
    """Hand the pages a track's decode and features freed back to the system (25 us a call).

    glibc keeps them in its arenas otherwise, and a long-lived worker's RSS creeps up by some 8 MB.
    """
    if _trim is not None:
        _trim(0)


def classifier() -> Classifier:
    """This process's classifier (loaded at start-up in prefork children, on first use elsewhere)."""
    global _classifier
    if _classifier is None:
        _classifier = Classifier.load(app_settings())
    return _classifier


@app.task(
    name="genretag.classify_track",
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
)
def classify_track(track_id: int, scan_id: int) -> str:
    """Classify one pending track queued by scan ``scan_id``; returns its new status (or "skipped")."""
    return job.run(track_id, scan_id, app_settings(), classifier(), time_limit_errors=(SoftTimeLimitExceeded,))
