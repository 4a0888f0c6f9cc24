"""End to end with real services: Celery worker subprocesses on Redis, PostgreSQL or SQLite, real music.

Each test gets its own PostgreSQL schema (or SQLite file) and its own Celery queue, so leftovers
of other runs cannot interfere.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from genretag.cli import cli
from genretag.config import Settings
from genretag.db import Prediction, Track, session_scope
from genretag.producer import scan

GTZAN_CLIPS = ["classical/classical.00000.opus", "disco/disco.00001.opus", "hiphop/hiphop.00002.opus",
               "reggae/reggae.00003.opus"]
WORKER_START_TIMEOUT = 180


def worker_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "GENRETAG_DATABASE_URL": settings.database_url,
        "GENRETAG_BROKER_URL": settings.broker_url,
        "GENRETAG_TASK_QUEUE": settings.task_queue,
        "GENRETAG_WORKERS": "2",
        "GENRETAG_INFERENCE_THREADS": "1",
    }


@contextmanager
def running(command: list[str], settings: Settings, log: Path) -> Iterator[subprocess.Popen]:
    """A worker subprocess, stopped with a warm shutdown (SIGTERM) at the end; its log is kept."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=worker_env(settings), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + WORKER_START_TIMEOUT
            while b" ready." not in log.read_bytes():
                assert proc.poll() is None, f"worker exited early:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"worker not ready:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def scan_within(library: Path, settings: Settings, worker: subprocess.Popen, log: Path, seconds: float = 600):
    """``scan`` in a thread, so a broken worker fails the test with its log instead of hanging it."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["summary"] = scan(library, settings)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"scan did not finish in {seconds} s; worker alive: {worker.poll() is None}\n" \
                                  f"{log.read_text(errors='replace')[-4000:]}"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]


def worker_options(queue: str) -> list[str]:
    return ["--concurrency", "2", "--pool", "prefork", "--loglevel", "info", "-Q", queue,
            "-n", f"e2e-{uuid.uuid4().hex[:8]}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]


def build_library(dest: Path, real_library: Path, gtzan_dir: Path) -> int:
    """The small real library, some GTZAN clips and one corrupt file; returns how many audio files."""
    shutil.copytree(real_library, dest / "real")
    for clip in GTZAN_CLIPS:
        target = dest / "gtzan" / clip
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(gtzan_dir / clip, target)
    (dest / "gtzan" / "corrupt.flac").write_bytes(b"fLaC" + os.urandom(8000))
    return len(list((dest / "real").rglob("*.*"))) + len(GTZAN_CLIPS) + 1


def check_every_track_ended(url: str, expected: int) -> tuple[int, int]:
    with session_scope(url) as s:
        tracks = s.scalars(select(Track)).all()
        predictions = s.scalar(select(func.count()).select_from(Prediction))
    assert len(tracks) == expected
    assert {t.status for t in tracks} <= {"done", "failed"}
    failed = [t for t in tracks if t.status == "failed"]
    assert all(t.error for t in failed), [(t.path, t.error) for t in failed]
    assert [Path(t.path).name for t in failed] == ["corrupt.flac"], [(t.path, t.error) for t in failed]
    done = len(tracks) - len(failed)
    assert predictions == done
    return done, len(failed)


def test_celery_workers_tag_a_real_library_into_postgresql(
    tmp_path: Path, real_library: Path, gtzan_dir: Path, pg_url: str, redis_url: str, task_queue: str
) -> None:
    library = tmp_path / "library"
    expected = build_library(library, real_library, gtzan_dir)
    settings = Settings(database_url=pg_url, broker_url=redis_url, task_queue=task_queue, workers=2, inference_threads=1,
                        max_outstanding=4)
    command = [sys.executable, "-m", "celery", "-A", "genretag.worker.app", "worker", *worker_options(task_queue)]
    with running(command, settings, tmp_path / "worker.log") as worker:
        started = time.monotonic()
        summary = scan_within(library, settings, worker, tmp_path / "worker.log")
        elapsed = time.monotonic() - started
        print(f"\ne2e celery+postgresql: {expected} files in {elapsed:.1f} s "
              f"({summary.counts.done} done, {summary.counts.failed} failed)")
        c = summary.counts
        assert (c.found, c.new, c.queued, c.done, c.failed) == (expected, expected, expected, expected - 1, 1)
        assert check_every_track_ended(pg_url, expected) == (expected - 1, 1)
        again = scan_within(library, settings, worker, tmp_path / "worker.log")
        assert (again.counts.unchanged, again.counts.queued) == (expected, 0)
    read_back_through_the_cli(pg_url, expected, tmp_path / "export.csv")


def read_back_through_the_cli(url: str, expected: int, export: Path) -> None:
    """query, stats and export return every track the workers wrote, the failed one with its reason."""
    def run(*args: str) -> str:
        res = CliRunner().invoke(cli, ["--database-url", url, *args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    listed = json.loads(run("query", "--json"))
    assert len(listed) == expected
    (failed,) = [r for r in listed if r["status"] == "failed"]
    assert failed["path"].endswith("corrupt.flac") and failed["error"]
    assert all(r["genre"] for r in listed if r["status"] == "done")
    stats = json.loads(run("stats", "--json"))
    assert stats["by_status"] == {"done": expected - 1, "failed": 1}
    assert sum(stats["by_genre"].values()) == expected - 1
    run("export", "--format", "csv", "--out", str(export))
    with open(export, newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == expected


def test_genretag_worker_command_on_sqlite(
    tmp_path: Path, gtzan_dir: Path, sqlite_url: str, redis_url: str, task_queue: str
) -> None:
    """``genretag worker`` with its CLI options, several processes writing one SQLite file."""
    library = tmp_path / "library"
    for clip in GTZAN_CLIPS:
        (library / Path(clip).name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(gtzan_dir / clip, library / Path(clip).name)
    (library / "corrupt.flac").write_bytes(b"fLaC" + os.urandom(8000))
    settings = Settings(database_url=sqlite_url, broker_url=redis_url, task_queue=task_queue, workers=2, inference_threads=1)
    genretag = str(Path(sys.executable).with_name("genretag"))
    command = [genretag, "--database-url", sqlite_url, "--broker-url", redis_url, "--workers", "2", "worker"]
    with running(command, settings, tmp_path / "worker.log") as worker:
        summary = scan_within(library, settings, worker, tmp_path / "worker.log")
    assert (summary.counts.done, summary.counts.failed) == (len(GTZAN_CLIPS), 1)
    check_every_track_ended(sqlite_url, len(GTZAN_CLIPS) + 1)


def test_named_cnn_model_scans_in_local_mode_and_with_celery_workers(
    tmp_path: Path, real_library: Path, gtzan_dir: Path, sqlite_url: str, pg_url: str, redis_url: str, task_queue: str
) -> None:
    """``genretag --model cnn scan``, in process on SQLite, then through ``genretag --model cnn worker``
    processes on PostgreSQL: every prediction carries the MFCC CNN bundle's version, and the genres are its own."""
    from genretag.bundle import read_meta
    from genretag.config import PACKAGED_MODEL, PACKAGED_MODELS

    version = read_meta(PACKAGED_MODELS / "cnn.genretag")["version"]
    assert version != read_meta(PACKAGED_MODEL)["version"]
    library = tmp_path / "library"
    library.mkdir()
    for clip in GTZAN_CLIPS:
        shutil.copy(gtzan_dir / clip, library / Path(clip).name)
    long_track = max((p for p in real_library.rglob("*.*") if p.is_file()), key=lambda p: p.stat().st_size)
    shutil.copy(long_track, library / long_track.name)  # a long track: staged windows, with descriptors
    expected = {Path(c).name: c.split("/")[0] for c in GTZAN_CLIPS}

    res = CliRunner().invoke(cli, ["--model", "cnn", "--database-url", sqlite_url, "scan", str(library)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output

    settings = Settings(database_url=pg_url, broker_url=redis_url, task_queue=task_queue, workers=2,
                        model_path=Path("cnn"))
    genretag = str(Path(sys.executable).with_name("genretag"))
    command = [genretag, "--model", "cnn", "--database-url", pg_url, "--broker-url", redis_url,
               "--workers", "2", "worker"]
    with running(command, settings, tmp_path / "worker.log") as worker:
        summary = scan_within(library, settings, worker, tmp_path / "worker.log")
    assert (summary.counts.done, summary.counts.failed) == (len(GTZAN_CLIPS) + 1, 0)

    for url in (sqlite_url, pg_url):
        with session_scope(url) as s:
            rows = s.execute(select(Track.path, Prediction.model_version, Prediction.genre, Prediction.segment_mode)
                             .join(Prediction, Prediction.track_id == Track.id)).all()
        assert len(rows) == len(GTZAN_CLIPS) + 1
        assert {r.model_version for r in rows} == {version}
        assert {Path(r.path).name: r.genre for r in rows if Path(r.path).name in expected} == expected
        assert [r.segment_mode for r in rows if Path(r.path).name == long_track.name] == ["spread"]
