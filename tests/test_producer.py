"""The producer on real files: the walk, the diff against the database, and local-mode scans."""

from __future__ import annotations

import os
import shutil
import struct
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from processes import faulty_decoder
from genretag.config import Settings
from genretag.db import Prediction, ScanRun, Track, session_scope, store
from genretag.producer import ScanRefused, scan
from genretag.producer.walk import walk

CLIPS = ["blues/blues.00000.opus", "jazz/jazz.00001.opus", "metal/metal.00002.opus"]


def settings_for(url: str, **kw) -> Settings:
    return Settings(database_url=url, broker_url="", workers=2, inference_threads=1, **kw)


@pytest.fixture
def library(tmp_path: Path, gtzan_dir: Path) -> Path:
    """Three real GTZAN clips in nested folders."""
    root = tmp_path / "library"
    for clip in CLIPS:
        dest = root / "nested" / clip
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(gtzan_dir / clip, dest)
    return root


def by_path(url: str) -> dict[str, Track]:
    with session_scope(url) as s:
        return {t.path: t for t in s.scalars(select(Track))}


def test_walk_matches_extensions_case_insensitively_and_skips_links(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.MP3", "b.Ogg", "sub/c.opus", "notes.txt", "cover.jpg", "sub/.hidden.flac"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path / "a.MP3", tmp_path / "link.mp3")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    found = sorted(os.path.relpath(f.path, tmp_path) for f in walk(tmp_path))
    assert found == ["a.MP3", "b.Ogg", "sub/.hidden.flac", "sub/c.opus"]
    assert all(f.size == 1 for f in walk(tmp_path))


def test_walk_follows_links_when_asked_without_looping(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.wav").write_bytes(b"x")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "y.flac").write_bytes(b"x")
    os.symlink(root, root / "sub" / "back-up")  # a loop
    os.symlink(outside, root / "linked")
    os.symlink(root / "missing-target", root / "broken.mp3")
    found = sorted(os.path.relpath(f.path, root) for f in walk(root, follow_symlinks=True))
    assert found == ["broken.mp3", "linked/x.wav", "sub/y.flac"]  # the broken link fails when classified


def test_scan_diff_second_run_queues_nothing_then_touch_delete_new_model_and_force(
    library: Path, sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_for(sqlite_url)
    first = scan(library, settings)
    assert (first.counts.found, first.counts.new, first.counts.queued, first.counts.done) == (3, 3, 3, 3)

    second = scan(library, settings)
    assert (second.counts.unchanged, second.counts.queued, second.counts.missing) == (3, 0, 0)

    touched = library / "nested" / CLIPS[0]
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 10))
    (library / "nested" / CLIPS[1]).unlink()
    third = scan(library, settings)
    assert (third.counts.changed, third.counts.queued, third.counts.done, third.counts.missing) == (1, 1, 1, 1)
    tracks = by_path(sqlite_url)
    assert tracks[str(library / "nested" / CLIPS[1])].status == "missing"
    assert tracks[str(touched)].status == "done"

    dry = scan(library, settings, dry_run=True)
    assert (dry.scan_id, dry.counts.found, dry.counts.queued, dry.counts.missing) == (None, 2, 0, 0)

    from genretag.bundle import load_bundle

    bundle = load_bundle(settings.model_path)
    bundle.version = "test-newer-model"
    newer = settings.replace(model_path=bundle.save(tmp_path / "newer.genretag"))
    assert scan(library, newer, dry_run=True).counts.queued == 2  # counted, not written
    upgraded = scan(library, newer)
    assert (upgraded.counts.unchanged, upgraded.counts.queued, upgraded.counts.done) == (2, 2, 2)
    assert scan(library, newer).counts.queued == 0
    forced = scan(library, newer, force=True)
    assert (forced.counts.unchanged, forced.counts.queued, forced.counts.done) == (2, 2, 2)
    with session_scope(sqlite_url) as s:
        versions = s.scalars(select(Prediction.model_version).order_by(Prediction.model_version)).all()
        runs = s.scalars(select(ScanRun).order_by(ScanRun.id)).all()
    assert versions.count("test-newer-model") == 2  # forced again, still one prediction per track and model
    assert [r.queued for r in runs] == [3, 0, 1, 2, 0, 2]  # dry runs record no scan run
    assert all(r.finished_at is not None for r in runs)


def test_scan_command_in_local_mode_records_bad_files_as_failed_and_goes_on(library: Path, sqlite_url: str) -> None:
    from click.testing import CliRunner

    from genretag.cli import cli

    (library / "corrupt.mp3").write_bytes(os.urandom(20_000))
    (library / "text.wav").write_text("not audio at all\n" * 100)
    (library / "empty.flac").write_bytes(b"")
    result = CliRunner().invoke(cli, ["--database-url", sqlite_url, "--broker-url", "", "--workers", "2",
                                      "scan", str(library)])
    assert result.exit_code == 0, result.output
    assert "found 6 (6 new, 0 changed, 0 unchanged), 0 missing; queued 6: 3 done, 3 failed" in result.output
    assert f"failed: {library / 'empty.flac'}: empty file" in result.output
    tracks = by_path(sqlite_url)
    for name in ("corrupt.mp3", "text.wav", "empty.flac"):
        track = tracks[str(library / name)]
        assert track.status == "failed" and track.error, name
    assert "empty" in tracks[str(library / "empty.flac")].error
    with session_scope(sqlite_url) as s:
        predictions = s.scalars(select(Prediction)).all()
    assert len(predictions) == 3
    assert all(p.segments_used > 0 and p.genre and 0 < p.confidence <= 1 for p in predictions)
    assert scan(library, settings_for(sqlite_url)).counts.queued == 0  # failed files stay failed until changed


def test_scan_refuses_roots_it_cannot_or_may_not_scan(library: Path, sqlite_url: str, tmp_path: Path) -> None:
    with pytest.raises(ScanRefused, match="not a directory"):
        scan(library / "nested" / CLIPS[0], settings_for(sqlite_url))
    with pytest.raises(ScanRefused, match="not under the configured library roots"):
        scan(library, settings_for(sqlite_url, library_roots=(str(tmp_path / "elsewhere"),)))
    summary = scan(library, settings_for(sqlite_url, library_roots=(str(tmp_path),)), dry_run=True)
    assert summary.counts.found == 3


def queued_tracks(url: str, root: Path, n: int) -> tuple[int, list[int]]:
    """``n`` pending tracks of a new scan run, as the diff leaves them before dispatch."""
    with session_scope(url) as s:
        scan_id = store.start_scan(s, str(root), "v", "celery").id
        ids = store.insert_tracks(s, [{"path": f"{root}/{i}.ogg", "size": 1, "mtime": 0.0} for i in range(n)], scan_id)
    return scan_id, sorted(ids.values())


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def test_celery_dispatch_holds_back_at_max_outstanding(
    sqlite_url: str, redis_url: str, task_queue: str, tmp_path: Path
) -> None:
    """No worker runs: the broker holds exactly what the producer may have outstanding."""
    import redis

    from genretag.producer.enqueue import CeleryDispatcher

    broker = redis.Redis.from_url(redis_url)
    settings = Settings(database_url=sqlite_url, broker_url=redis_url, task_queue=task_queue, max_outstanding=3)
    scan_id, ids = queued_tracks(sqlite_url, tmp_path, 7)
    sender = threading.Thread(target=CeleryDispatcher(settings, scan_id).submit, args=(ids,), daemon=True)
    sender.start()
    wait_for(lambda: broker.llen(task_queue) == 3)
    time.sleep(1.5)
    assert broker.llen(task_queue) == 3 and sender.is_alive()
    with session_scope(sqlite_url) as s:  # two finish, as a worker would record them
        for track_id in ids[:2]:
            store.record_failure(s, track_id, "finished elsewhere")
    wait_for(lambda: broker.llen(task_queue) == 5)
    with session_scope(sqlite_url) as s:
        for track_id in ids[2:5]:
            store.record_failure(s, track_id, "finished elsewhere")
    sender.join(20)
    assert not sender.is_alive() and broker.llen(task_queue) == 7


def test_celery_dispatch_resends_after_a_stall_then_gives_up(
    sqlite_url: str, redis_url: str, task_queue: str, tmp_path: Path
) -> None:
    import redis

    from genretag.producer.enqueue import CeleryDispatcher, ScanStalled

    broker = redis.Redis.from_url(redis_url)
    settings = Settings(database_url=sqlite_url, broker_url=redis_url, task_queue=task_queue, max_attempts=1)
    scan_id, ids = queued_tracks(sqlite_url, tmp_path, 2)
    dispatcher = CeleryDispatcher(settings, scan_id)
    dispatcher.stall_seconds = 1.0  # stands for task_time_limit + margin
    dispatcher.submit(ids)
    assert broker.llen(task_queue) == 2
    with pytest.raises(ScanStalled, match=task_queue):
        dispatcher.drain()
    assert broker.llen(task_queue) == 4  # sent once more before giving up


def test_local_scan_stops_decoders_that_exceed_the_time_limit(
    tmp_path: Path, sqlite_url: str, gtzan_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder that takes 30 s under a 1-s limit is stopped, in the pool and again when retried alone,
    and the track fails as timed out (tests/faultydecoder's ``slow*`` file, loaded by the spawned decoders;
    a real decode is no use here: on a fast machine it finishes within any limit a test can wait for)."""
    library = tmp_path / "library"
    library.mkdir()
    shutil.copy(gtzan_dir / CLIPS[0], library / "slow-clip.opus")
    monkeypatch.setenv("PYTHONPATH", faulty_decoder(dict(os.environ))["PYTHONPATH"])
    monkeypatch.setenv("FAULTY_DECODER_DELAY", "30")
    started = time.monotonic()
    summary = scan(library, settings_for(sqlite_url, task_time_limit=1))
    assert (summary.counts.done, summary.counts.failed) == (0, 1)
    assert by_path(sqlite_url)[str(library / "slow-clip.opus")].error.startswith("timed out")
    assert time.monotonic() - started < 25, "a decoder was waited on past the limit"


def test_a_killed_pool_ends_its_manager_thread_even_with_half_a_result_in_the_pipe(sqlite_url: str) -> None:
    """A decoder killed while it wrote its result leaves half a message in the pool's result pipe; the
    executor's manager thread, reading it, must still end, or the scan's process never exits (it joins
    that thread at exit). The half message is written here as such a decoder leaves it."""
    from genretag.producer.local import LocalRunner

    runner = LocalRunner(settings_for(sqlite_url), scan_id=0)
    pool = runner.pool
    pool.submit(int).result()  # the decoders are up
    manager, writer = pool._executor_manager_thread, pool._result_queue._writer
    os.write(writer.fileno(), struct.pack("!i", 1 << 20) + b"half")  # a 1-MB message cut after 4 bytes
    time.sleep(0.5)  # the manager thread is now waiting for the rest
    runner._kill_pool()
    manager.join(timeout=10)
    try:
        assert not manager.is_alive(), "the manager thread still waits on the cut message"
    finally:
        if not writer.closed:
            writer.close()  # so a failing run still exits


@pytest.mark.parametrize(("vote_z", "windows_heard"), [(float("inf"), range(8, 13)), (0.0, range(2, 6))])
def test_local_scan_sends_open_votes_back_for_their_next_stage(
    real_library: Path, sqlite_url: str, tmp_path: Path, vote_z: float, windows_heard: range
) -> None:
    """Stages of 5, 7, 10 and 12 windows: z = inf runs them all through the decoder pool, z = 0 stops after the first."""
    from genretag.classify import Classifier

    longest = max((p for p in real_library.rglob("*.ogg")), key=lambda p: p.stat().st_size)
    root = tmp_path / "long"
    root.mkdir()
    shutil.copy(longest, root / longest.name)
    settings = settings_for(sqlite_url, windows=12, first_windows=5, vote_z=vote_z)
    assert scan(root, settings).counts.done == 1
    with session_scope(sqlite_url) as s:
        (prediction,) = s.scalars(select(Prediction)).all()
    assert prediction.segment_mode == "spread" and prediction.segments_used in windows_heard
    in_process = Classifier.load(settings).classify(root / longest.name)
    assert (prediction.genre, prediction.segments_used) == (in_process.genre, in_process.segments_used)
