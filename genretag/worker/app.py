"""The Celery application, configured from :class:`~genretag.config.Settings` in one place.

``celery -A genretag.worker.app worker`` reads the settings from ``GENRETAG_*`` variables;
``genretag worker`` (and the producer) call :func:`configure` with the CLI's settings first.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from genretag.config import Settings, get_settings
from genretag.worker.schedule import beat_config

CHILD_START_SECONDS = 60  # a child loading the model on a busy machine can miss Celery's 4-s default


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for robust, result-less classification tasks."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        # A message stays unacknowledged until its task is finished; a task whose process dies is
        # redelivered (and counted against max_attempts by the task itself).
        "broker_transport_options": {"visibility_timeout": 2 * settings.task_time_limit + 60},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A process killed at the hard time limit is requeued too (Celery acks it by default, which
        # left its track pending until a rescan); the attempt count ends a file that always hangs.
        "task_acks_on_timeout": False,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,  # outcomes go to the database; nobody reads Celery results
        "result_backend": None,
        "task_default_queue": settings.task_queue,
        "task_soft_time_limit": settings.task_soft_time_limit,
        "task_time_limit": settings.task_time_limit,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_concurrency": settings.worker_count,
        "worker_proc_alive_timeout": CHILD_START_SECONDS,
        "worker_hijack_root_logger": False,
    }


app = Celery("genretag", include=["genretag.worker.tasks", "genretag.worker.schedule"])
_settings: Settings = get_settings()


def configure(settings: Settings) -> Celery:
    """Point the app (and the tasks its worker processes run) at ``settings``; call before forking."""
    global _settings
    _settings = settings
    app.conf.update(celery_config(settings))
    app.conf.update(beat_config(settings))
    return app


def start_worker(settings: Settings, **options: Any) -> int:
    """Run a worker of the app configured for ``settings`` until it stops; its exit code.

    ``app.Worker`` rather than ``worker_main``: Celery's command line imports every installed CLI
    plugin (Flower's tornado, prometheus_client, prompt_toolkit), 23.5 MB that each pool child inherits.
    """
    worker = configure(settings).Worker(**options)
    worker.start()
    return worker.exitcode


def app_settings() -> Settings:
    return _settings


configure(_settings)
