"""Nightly rescans: the beat schedule built from the settings (real Celery objects) and a real beat process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from celery.beat import Scheduler
from celery.schedules import crontab
from click.testing import CliRunner
from sqlalchemy import select

from processes import background

from genretag.cli import cli
from genretag.config import Settings, get_settings
from genretag.db import ScanRun, session_factory
from genretag.worker.schedule import SCAN_TASK, beat_schedule, parse_cron, scan_queue

GENRETAG = str(Path(sys.executable).with_name("genretag"))
ALL_DAYS_OF_MONTH, ALL_MONTHS, ALL_WEEKDAYS = set(range(1, 32)), set(range(1, 13)), set(range(7))


def test_schedule_from_settings_has_the_cron_fields_task_and_roots() -> None:
    settings = Settings(broker_url="redis://localhost", task_queue="tq", library_roots=("/music", "/srv/more music"),
                        scan_schedule="30 2 * * 1-5")
    schedule = beat_schedule(settings)
    assert set(schedule) == {"rescan /music", "rescan /srv/more music"}
    for root in settings.library_roots:
        entry = schedule[f"rescan {root}"]
        assert entry["task"] == SCAN_TASK == "genretag.scan_library_root"
        assert entry["args"] == (root,)
        assert entry["options"] == {"queue": "tq.scans"} and scan_queue(settings) == "tq.scans"
        cron = entry["schedule"]
        assert isinstance(cron, crontab)
        assert (cron.minute, cron.hour, cron.day_of_week) == ({30}, {2}, {1, 2, 3, 4, 5})
        assert (cron.day_of_month, cron.month_of_year) == (ALL_DAYS_OF_MONTH, ALL_MONTHS)


def test_default_schedule_is_every_night_at_three() -> None:
    cron = parse_cron(Settings().scan_schedule)
    assert (cron.minute, cron.hour) == ({0}, {3})
    assert (cron.day_of_month, cron.month_of_year, cron.day_of_week) == (ALL_DAYS_OF_MONTH, ALL_MONTHS, ALL_WEEKDAYS)
    assert beat_schedule(Settings()) == {}  # no roots: beat idles


@pytest.mark.parametrize("bad", ["0 3 * *", "0 3 * * * *", "61 3 * * *", "0 25 * * *", "0 3 * * funday", ""])
def test_a_bad_cron_expression_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="scan_schedule"):
        parse_cron(bad)


def test_the_celery_app_carries_the_schedule_and_beat_loads_it() -> None:
    from genretag.worker.app import app, configure

    settings = Settings(broker_url="redis://localhost", library_roots=("/music",), scan_schedule="15 4 * * 0",
                        scan_timezone="Europe/Paris")
    configure(settings)
    try:
        app.loader.import_default_modules()
        task = app.tasks[SCAN_TASK]
        assert task.acks_late is False  # a redelivered long scan would run twice
        assert app.conf.timezone == "Europe/Paris"
        scheduler = Scheduler(app=app, lazy=True)
        scheduler.setup_schedule()
        entry = scheduler.schedule["rescan /music"]
        assert (entry.task, entry.args, entry.options["queue"]) == (SCAN_TASK, ("/music",), "genretag.scans")
        due, seconds = entry.is_due()
        assert not due and 0 < seconds <= 7 * 24 * 3600
        # Next run: Sunday 04:15 Paris time, whatever day it is now.
        now = entry.schedule.now()
        nxt = now + timedelta(seconds=seconds)
        assert (nxt.isoweekday(), nxt.hour, nxt.minute) == (7, 4, 15) and str(nxt.tzinfo) == "Europe/Paris"
    finally:
        configure(get_settings())


def test_beat_command_refuses_what_cannot_work(tmp_path: Path) -> None:
    runner = CliRunner()
    broker = ["--broker-url", "redis://localhost:1/0"]
    get_settings.cache_clear()
    try:
        res = runner.invoke(cli, ["--broker-url", "", "beat", str(tmp_path)])
        assert res.exit_code == 2 and "needs a broker" in res.output
        res = runner.invoke(cli, [*broker, "beat"], env={"GENRETAG_LIBRARY_ROOTS": ""})
        assert res.exit_code == 2 and "nothing to scan" in res.output
        get_settings.cache_clear()
        res = runner.invoke(cli, [*broker, "beat", str(tmp_path)], env={"GENRETAG_SCAN_SCHEDULE": "0 3 * *"})
        assert res.exit_code == 2 and "5 cron fields" in res.output
        get_settings.cache_clear()
        res = runner.invoke(cli, [*broker, "beat", str(tmp_path)], env={"GENRETAG_SCAN_TIMEZONE": "Mars/Olympus"})
        assert res.exit_code == 2 and "not a known time zone" in res.output
    finally:
        get_settings.cache_clear()


# --- a real beat process ---------------------------------------------------------------------


def beat_process(env: dict[str, str], log: Path, schedule_file: Path):
    """``genretag beat`` (beat + the scans worker), stopped with TERM (then KILL) afterwards."""
    return background([GENRETAG, "beat", "--schedule-file", str(schedule_file), "--loglevel", "info"], env, log)


def wait_for_scan(url: str, root: str, proc: subprocess.Popen, log: Path, timeout: float) -> ScanRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_factory(url)() as s:
            run = s.scalar(select(ScanRun).where(ScanRun.root == root, ScanRun.finished_at.is_not(None)))
        if run is not None:
            return run
        assert proc.poll() is None, f"genretag beat exited early:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    pytest.fail(f"no finished scan of {root} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def beat_env(pg_url: str, redis_url: str, task_queue: str, tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "library"
    root.mkdir()
    (root / "notes.txt").write_text("not music")  # nothing to classify: the scan needs no workers
    return {
        **os.environ,
        "GENRETAG_DATABASE_URL": pg_url,
        "GENRETAG_BROKER_URL": redis_url,
        "GENRETAG_TASK_QUEUE": task_queue,
        "GENRETAG_LIBRARY_ROOTS": str(root),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def test_a_scan_task_on_the_scans_queue_runs_the_producer_in_the_beat_process(beat_env: dict[str, str],
                                                                               tmp_path: Path) -> None:
    root = os.path.realpath(beat_env["GENRETAG_LIBRARY_ROOTS"])
    log = tmp_path / "beat.log"
    with beat_process(beat_env, log, tmp_path / "schedule") as proc:
        # What beat sends at the scheduled time, sent now by name from an unrelated client.
        probe = Celery("probe", broker=beat_env["GENRETAG_BROKER_URL"])
        probe.send_task(SCAN_TASK, args=(root,), queue=f"{beat_env['GENRETAG_TASK_QUEUE']}.scans")
        run = wait_for_scan(beat_env["GENRETAG_DATABASE_URL"], root, proc, log, timeout=120)
        probe.close()
    assert (run.mode, run.found, run.queued) == ("celery", 0, 0)
    text = log.read_text()
    assert "beat: Starting" in text and SCAN_TASK in text


@pytest.mark.slow
def test_beat_fires_on_its_cron_schedule(beat_env: dict[str, str], tmp_path: Path) -> None:
    root = os.path.realpath(beat_env["GENRETAG_LIBRARY_ROOTS"])
    log = tmp_path / "beat.log"
    started = datetime.now().astimezone()
    with beat_process({**beat_env, "GENRETAG_SCAN_SCHEDULE": "* * * * *"}, log, tmp_path / "schedule") as proc:
        run = wait_for_scan(beat_env["GENRETAG_DATABASE_URL"], root, proc, log, timeout=150)
    assert run.mode == "celery" and run.started_at > started
    assert "Sending due task rescan " + root in log.read_text()
