"""The per-track job and the Celery task around it, without a broker: real model, real audio, real databases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from genretag.classify import Classifier
from genretag.config import Settings
from genretag.db import Prediction, Track, session_scope
from genretag.db import store
from genretag.worker import job
from genretag.worker.app import celery_config

CLIP = "blues/blues.00003.opus"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(Settings(inference_threads=1))


@pytest.fixture
def library(tmp_path: Path, gtzan_dir: Path) -> Path:
    root = tmp_path / "library"
    root.mkdir()
    shutil.copy(gtzan_dir / CLIP, root / "good.opus")
    (root / "bad.ogg").write_bytes(b"OggS" + os.urandom(3000))
    return root


def queue(url: str, root: Path, *names: str) -> tuple[int, list[int]]:
    """A scan run of ``root`` with ``names`` as pending tracks, as the producer leaves them."""
    with session_scope(url) as s:
        scan_id = store.start_scan(s, str(root), "v", "celery").id
        rows = [{"path": str(root / n), "size": 1, "mtime": 0.0} for n in names]
        ids = store.insert_tracks(s, rows, scan_id)
        store.mark_queued(s, list(ids.values()), scan_id)
    return scan_id, [ids[str(root / n)] for n in names]


def track(url: str, track_id: int) -> Track:
    with session_scope(url) as s:
        return s.get(Track, track_id)


def test_celery_is_configured_for_at_least_once_delivery() -> None:
    conf = celery_config(Settings(broker_url="redis://127.0.0.1:6379/11", task_queue="q", workers=3))
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"] and conf["task_ignore_result"]
    assert conf["worker_prefetch_multiplier"] == 1 and conf["worker_concurrency"] == 3
    assert conf["task_default_queue"] == "q" and conf["worker_proc_alive_timeout"] >= 30
    assert conf["task_soft_time_limit"] < conf["task_time_limit"]
    assert conf["broker_transport_options"]["visibility_timeout"] > conf["task_time_limit"]


def test_job_records_a_prediction_and_a_duplicate_delivery_is_skipped(
    db_url: str, library: Path, classifier: Classifier
) -> None:
    settings = Settings(database_url=db_url)
    scan_id, (good,) = queue(db_url, library, "good.opus")
    assert job.run(good, scan_id, settings, classifier) == "done"
    assert job.run(good, scan_id, settings, classifier) == "skipped"  # redelivered after it was done
    t = track(db_url, good)
    assert (t.status, t.attempts, t.format) == ("done", 1, "OGG/OPUS") and t.duration > 25
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Prediction)) == 1


def test_job_records_bad_audio_as_failed_with_its_reason(db_url: str, library: Path, classifier: Classifier) -> None:
    scan_id, (bad,) = queue(db_url, library, "bad.ogg")
    assert job.run(bad, scan_id, Settings(database_url=db_url), classifier) == "failed"
    t = track(db_url, bad)
    assert t.status == "failed" and t.error and "bad.ogg" not in t.error  # the reason, not the path


def test_job_refuses_paths_outside_the_library_roots(
    sqlite_url: str, library: Path, tmp_path: Path, classifier: Classifier
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scan_id, (good,) = queue(sqlite_url, library, "good.opus")
    settings = Settings(database_url=sqlite_url, library_roots=(str(elsewhere),))
    assert job.run(good, scan_id, settings, classifier) == "skipped"
    assert track(sqlite_url, good).error == "refused: outside the configured library roots"


def test_is_inside_resolves_links_unless_following_them(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "x.mp3").write_bytes(b"x")
    os.symlink(outside / "x.mp3", root / "link.mp3")
    assert job.is_inside(str(root / "a.mp3"), [str(root)], follow_symlinks=False)
    assert not job.is_inside(str(root / "link.mp3"), [str(root)], follow_symlinks=False)
    assert job.is_inside(str(root / "link.mp3"), [str(root)], follow_symlinks=True)
    assert not job.is_inside(str(root) + "-other/a.mp3", [str(root)], follow_symlinks=False)
    assert not job.is_inside(str(root / ".." / "outside" / "x.mp3"), [str(root)], follow_symlinks=True)


def test_a_track_that_keeps_killing_workers_ends_failed(sqlite_url: str, library: Path, classifier: Classifier) -> None:
    settings = Settings(database_url=sqlite_url, max_attempts=2)
    scan_id, (good,) = queue(sqlite_url, library, "good.opus")
    for _ in range(2):  # two deliveries whose worker died after counting the attempt
        with session_scope(sqlite_url) as s:
            assert job.start(s, good, scan_id, settings) is not None
    assert job.run(good, scan_id, settings, classifier) == "skipped"
    assert track(sqlite_url, good).error.startswith("gave up after 2 attempts")


def test_the_celery_task_runs_the_job(sqlite_url: str, library: Path, classifier: Classifier) -> None:
    """``apply`` runs the registered task in this process, through the app's settings."""
    from genretag.worker import tasks
    from genretag.worker.app import app_settings, configure

    previous = app_settings()
    configure(Settings(database_url=sqlite_url, broker_url="redis://127.0.0.1:6379/11"))
    tasks._classifier = classifier
    try:
        scan_id, (good, bad) = queue(sqlite_url, library, "good.opus", "bad.ogg")
        assert tasks.classify_track.apply((good, scan_id)).get() == "done"
        assert tasks.classify_track.apply((bad, scan_id)).get() == "failed"
    finally:
        configure(previous)
        tasks._classifier = None
    assert track(sqlite_url, good).status == "done" and track(sqlite_url, bad).status == "failed"


def test_celery_worker_without_a_broker_stops_with_the_reason() -> None:
    env = {**os.environ, "GENRETAG_BROKER_URL": ""}
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "genretag.worker.app", "worker", "--concurrency", "1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "GENRETAG_BROKER_URL is empty" in proc.stdout + proc.stderr
