"""Nightly rescans: the Celery beat schedule built from the settings, and the task it sends.

Beat sends one ``genretag.scan_library_root`` task per library root at ``Settings.scan_schedule``
(cron syntax). The task runs the producer, which records the run in ``scan_runs``. A scan blocks
while workers classify what it queued, so it goes to a queue of its own (:func:`scan_queue`),
consumed by the process ``genretag beat`` starts beside beat; classification workers never hold
a slot waiting for themselves.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery import shared_task
from celery.schedules import ParseException, crontab

from genretag.config import Settings

SCAN_TASK = "genretag.scan_library_root"
SCAN_TIME_LIMIT = 23 * 3600  # seconds; a scan must end before the next night's one starts


def parse_cron(expression: str) -> crontab:
    """A Celery ``crontab`` from five cron fields: minute hour day-of-month month day-of-week."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"scan_schedule needs 5 cron fields (minute hour day month weekday), got {expression!r}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week
        )
    except (ValueError, ParseException) as exc:
        raise ValueError(f"scan_schedule {expression!r} is not valid cron: {exc}") from None


def scan_queue(settings: Settings) -> str:
    """The queue scheduled scans travel on, beside (not in) the classification queue."""
    return f"{settings.task_queue}.scans"


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """One beat entry per library root (none without roots, so beat idles instead of failing)."""
    when = parse_cron(settings.scan_schedule)
    return {
        f"rescan {root}": {
            "task": SCAN_TASK,
            "schedule": when,
            "args": (root,),
            "options": {"queue": scan_queue(settings)},
        }
        for root in settings.library_roots
    }


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone this system knows, else a ``ValueError`` that says so."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"scan_timezone {name!r} is not a known time zone (e.g. UTC, Europe/Paris)") from None
    return name


def beat_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings for beat: the schedule and the time zone its cron fields are read in."""
    return {"beat_schedule": beat_schedule(settings), "timezone": check_timezone(settings.scan_timezone)}


# Acked on receipt: a scan outlives the broker's visibility timeout, and a redelivered scan would
# run twice. A scan lost with its process is simply done again the next night.
@shared_task(name=SCAN_TASK, acks_late=False, soft_time_limit=SCAN_TIME_LIMIT, time_limit=SCAN_TIME_LIMIT + 60)
def scan_library_root(root: str) -> dict[str, Any]:
    """Rescan ``root`` through the producer and wait for the workers; returns the run's counts."""
    from genretag.producer import scan
    from genretag.worker.app import app_settings

    summary = scan(root, app_settings(), wait=True)
    return {"scan_id": summary.scan_id, "root": summary.root, **summary.counts.as_dict()}
