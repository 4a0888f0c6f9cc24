"""Reliability faults with real processes: bad input, killed workers, restarted services, races.

Every test scans a real library with the real ``genretag`` command (local mode or Celery workers
over Redis, SQLite or PostgreSQL) and audits the database afterwards: each file is a track that
ended done or failed with a reason, none is lost (left pending or never recorded), none has two
predictions from one model. Each test also appends rows to the file named by
``GENRETAG_FAULT_REPORT`` when set; ``bench/faults.py`` prints them as one table.

The slow faults run with ``--run-slow``: the 2-hour file, Redis restarted and PostgreSQL stopped
mid-scan (private servers), a whole worker SIGKILLed (redelivery by the visibility timeout), and a
decoder hang past the hard time limit. Decoders that hang, crash or are slow come from
``tests/faultydecoder`` (a wrapper of PyAV loaded through PYTHONPATH: decoding is in-process now).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select, text

from badinput import make_corpus
from processes import background, faulty_decoder
from genretag.db.models import Prediction, Track

BIN = Path(sys.executable).parent
GENRETAG = str(BIN / "genretag")
SECRET = "s3cret-Pa55word"


# --- reporting ------------------------------------------------------------------------------


def report(fault: str, expected: str, actual: str, ok: bool, counted: bool = True, **totals: int) -> None:
    """One row of the runner's table (no-op unless GENRETAG_FAULT_REPORT names a file).

    ``counted=False`` marks a detail row whose files a whole-scan row already counts in the totals.
    """
    target = os.environ.get("GENRETAG_FAULT_REPORT")
    if target:
        row = {"fault": fault, "expected": expected, "actual": actual, "ok": ok, "counted": counted, **totals}
        with open(target, "a") as f:
            f.write(json.dumps(row) + "\n")


def audit(database_url: str, expected_paths: list[str]) -> dict[str, int]:
    """Found, done, failed, lost and duplicated over the files that must each end as one track.

    Lost: a file with no track, or one left pending. Duplicated: extra track rows for one path and
    extra predictions for one (track, model version).
    """
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Track.path, Track.status)).all()
            extra = (
                select((func.count() - 1).label("n"))
                .select_from(Prediction)
                .group_by(Prediction.track_id, Prediction.model_version)
                .subquery()
            )
            dup_predictions = conn.scalar(select(func.coalesce(func.sum(extra.c.n), 0)))
    finally:
        engine.dispose()
    by_path: dict[str, list[str]] = {}
    for path, status in rows:
        by_path.setdefault(path, []).append(status)
    statuses = [by_path[p][0] for p in expected_paths if p in by_path]
    return {
        "found": len(statuses),
        "done": statuses.count("done"),
        "failed": statuses.count("failed"),
        "lost": len(expected_paths) - len(statuses) + statuses.count("pending"),
        "duplicated": int(dup_predictions) + sum(len(v) - 1 for v in by_path.values()),
    }


def track_rows(database_url: str) -> dict[str, tuple[str, str | None, int]]:
    """path -> (status, error, attempts) for every track."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {p: (s, e, a) for p, s, e, a in conn.execute(select(Track.path, Track.status, Track.error, Track.attempts))}
    finally:
        engine.dispose()


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime (ns) of every regular file under ``root`` (unreadable ones by mode only)."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                continue
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if st.st_mode & 0o444 else f"mode {st.st_mode:o}"
            out[path] = (digest, st.st_mtime_ns)
    return out


# --- processes ------------------------------------------------------------------------------


def genretag_env(**settings: object) -> dict[str, str]:
    """The environment for a genretag process: ours, minus any GENRETAG_* setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENRETAG_")}
    env.update({"GENRETAG_INFERENCE_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update({f"GENRETAG_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def drop_file_read_override() -> list[str]:
    """A command prefix that makes file permissions bind even for root (drops CAP_DAC_*), or [] if not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: a file without read permission cannot be made unreadable")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_m4a(path: Path, seconds: float = 8.0) -> Path:
    """A real AAC file (synthetic music, encoded by PyAV) for the faulty decoder to trip over by name."""
    from badinput import _music
    from media import encode

    import soxr

    y = soxr.resample(_music(seconds, seed=len(path.name)), 22050, 44100)
    return encode(np.stack([y, y], axis=1), 44100, path, "m4a")


def copy_clips(gtzan: Path, dest: Path, n: int) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(sorted((gtzan / "blues").glob("*.opus"))[:n]):
        out.append(Path(shutil.copyfile(src, dest / f"clip{i:02d}.opus")))
    return out


def celery_worker(env: dict[str, str], log: Path):
    """A ``genretag worker`` process (Celery prefork), stopped (TERM, then KILL) afterwards."""
    return background([GENRETAG, "worker", "--loglevel", "info"], env, log)


def pool_children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (the Celery pool processes of a worker)."""
    children = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(task) as f:
            children += [int(c) for c in f.read().split()]
    return children


def wait_until(check, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def settled(database_url: str, paths: list[str]) -> bool:
    """Every one of ``paths`` is a track that is done or failed."""
    rows = track_rows(database_url)
    return all(p in rows and rows[p][0] in ("done", "failed") for p in paths)


def run_scan(env: dict[str, str], root: Path, *args: str, timeout: float = 300, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, GENRETAG, "scan", str(root), *args], env=env, capture_output=True, text=True, timeout=timeout)


# --- 1. bad input, local mode ---------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_scan(tmp_path_factory, real_library, gtzan_dir, request) -> dict:
    """The bad-input corpus beside two good clips, scanned once in local mode with file permissions binding."""
    slow = request.config.getoption("--run-slow")
    base = tmp_path_factory.mktemp("bad-input")
    library = base / "library"
    cases = make_corpus(library, real_library, gtzan_dir, slow=slow)
    good = copy_clips(gtzan_dir, library / "good", 2)
    url = f"sqlite:///{base / 'db' / 'genretag.sqlite3'}"
    before = snapshot(library)
    started = time.monotonic()
    proc = run_scan(genretag_env(database_url=url, workers=2), library, "--follow-symlinks",
                    timeout=1200 if slow else 300, prefix=drop_file_read_override())
    elapsed = time.monotonic() - started
    return {"cases": cases, "good": good, "url": url, "proc": proc, "library": library,
            "before": before, "after": snapshot(library), "seconds": elapsed}


def test_scan_of_bad_input_completes(bad_scan: dict) -> None:
    proc = bad_scan["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = [str(c.path) for c in bad_scan["cases"] if c.expect != "walked"] + [str(p) for p in bad_scan["good"]]
    totals = audit(bad_scan["url"], expected)
    report("bad-input scan (local mode, whole corpus)", "scan exits 0, every file done or failed",
           f"exit {proc.returncode} after {bad_scan['seconds']:.0f} s", proc.returncode == 0, **totals)
    assert totals["lost"] == 0 and totals["duplicated"] == 0, totals
    assert totals["done"] >= len(bad_scan["good"])


def test_each_bad_input_ends_with_a_clear_outcome(bad_scan: dict) -> None:
    rows = track_rows(bad_scan["url"])
    engine = create_engine(bad_scan["url"])
    with engine.connect() as conn:
        durations = dict(conn.execute(select(Track.path, Track.duration)).tuples().all())
    engine.dispose()
    wrong = []
    for case in bad_scan["cases"]:
        status, error, _ = rows.get(str(case.path), (None, None, 0))
        actual = "no track (walked past)" if status is None else f"{status}" + (f": {error}" if error else "")
        if status == "done":
            actual += f" ({durations[str(case.path)]:.0f} s of audio)"
        ok = case.matches(status, error)
        expected = case.expect + (f" ({case.reason})" if case.reason else "")
        report(f"bad input: {case.kind}", expected, actual, ok, counted=False,
               found=int(status is not None), done=int(status == "done"), failed=int(status == "failed"),
               lost=int(case.expect != "walked" and status in (None, "pending")), duplicated=0)
        if not ok:
            wrong.append(f"{case.kind}: expected {expected}, got {actual}")
    assert not wrong, "\n".join(wrong)


def test_path_with_quotes_and_semicolons_is_stored_and_found_intact(bad_scan: dict) -> None:
    """The query engine binds parameters; here the stored path round-trips byte for byte."""
    case = next(c for c in bad_scan["cases"] if c.kind == "quotes/semicolon name")
    engine = create_engine(bad_scan["url"])
    with engine.connect() as conn:
        found = conn.execute(select(Track.path, Track.status).where(Track.path == str(case.path))).all()
        tables = conn.execute(text("SELECT count(*) FROM sqlite_master WHERE name = 'tracks'")).scalar()
    engine.dispose()
    assert found == [(str(case.path), "done")] and tables == 1
    listed = subprocess.run([GENRETAG, "query", "--status", "done", "--json"], capture_output=True, text=True,
                            env=genretag_env(database_url=bad_scan["url"]), timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert str(case.path) in [row["path"] for row in json.loads(listed.stdout)]
    report("path with quotes and ';' (SQL injection shape)", "stored and found intact", "stored and found intact", True)


def test_scan_never_writes_to_music_files(bad_scan: dict) -> None:
    changed = [p for p, v in bad_scan["before"].items() if bad_scan["after"].get(p) != v]
    report("music files after a scan", "bytes and mtimes unchanged", f"{len(changed)} changed", not changed)
    assert not changed


def test_local_mode_survives_decoders_that_hang_or_crash(tmp_path, gtzan_dir) -> None:
    """Local mode has no Celery: a decoder that hangs is ended by local mode's own task time limit,
    which kills the decoders and retries the others alone; a decoder that kills its pool process is
    isolated and recorded. The rest of the scan goes on.

    The limit runs 60 s here: it also counts the start of a fresh decoder process, which took over
    20 s on a machine loaded 15-fold (2 cores), so a tighter one times out good files after a pool restart.
    """
    root = tmp_path / "library"
    clips = copy_clips(gtzan_dir, root, 2)
    hang, crash = write_m4a(root / "hang-local.m4a"), write_m4a(root / "crash-local.m4a")
    paths = [str(p) for p in [*clips, hang, crash]]
    url = f"sqlite:///{tmp_path / 'db' / 'genretag.sqlite3'}"
    env = faulty_decoder(genretag_env(database_url=url, workers=2, task_time_limit=60))
    proc = run_scan(env, root, timeout=300)
    rows, totals = track_rows(url), audit(url, paths)
    expectations = ((hang, "timed out: decoding took longer than 60 s"), (crash, "crashed its process"))
    for path, reason in expectations:
        status, error, _ = rows.get(str(path), (None, None, 0))
        report(f"local mode: decoder {'hangs, local time limit' if path == hang else 'kills its process'} ({path.name})",
               f"failed ({reason})", f"{status}: {error}", status == "failed" and reason in (error or ""),
               counted=False, **audit(url, [str(path)]))
    report("local-mode scan with poison files (local time limit)", "exits 0, clips done, poison failed",
           f"exit {proc.returncode}", proc.returncode == 0 and totals["done"] == 2, **totals)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path, reason in expectations:
        assert rows[str(path)][0] == "failed" and reason in rows[str(path)][1], (rows, proc.stderr[-3000:])
    assert totals == {"found": 4, "done": 2, "failed": 2, "lost": 0, "duplicated": 0}, (rows, proc.stderr[-3000:])
    assert not holders(hang), "a killed decoder left a process holding the file"


def holders(path: Path) -> list[int]:
    """Processes that still hold ``path`` open (a decoder left running after its process was to be killed),
    given a moment."""
    time.sleep(1.0)
    found = []
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == str(path):
                found.append(int(fd.split("/")[2]))
        except OSError:
            continue
    return sorted(set(found))


# --- 4. security: secrets in errors --------------------------------------------------------


@pytest.mark.parametrize("command", [["scan", "{root}"], ["stats"]])
def test_database_password_never_printed(tmp_path: Path, command: list[str]) -> None:
    url = f"postgresql+psycopg://genretag:{SECRET}@127.0.0.1:{free_port()}/music"
    args = [a.format(root=tmp_path) for a in command]
    proc = subprocess.run([GENRETAG, *args], env=genretag_env(database_url=url), capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    ok = proc.returncode != 0 and SECRET not in output and "***" in output
    report(f"wrong PostgreSQL port, `genretag {command[0]}`", "fails, prints *** not the password",
           f"exit {proc.returncode}, password {'SHOWN' if SECRET in output else 'hidden'}", ok)
    assert proc.returncode != 0
    assert SECRET not in output, output[-2000:]
    assert "***" in output, output[-2000:]


# --- 2. crash faults with Celery workers on Redis and PostgreSQL ----------------------------


@pytest.fixture(scope="module")
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL schema for this module's worker tests (the URL carries it to the workers)."""
    from conftest import PG_BASE_URL

    schema = f"gt_faults_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@contextmanager
def private_queue(redis_url: str) -> Iterator[str]:
    import redis

    name = f"genretag-faults-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"*{name}*"):
            client.delete(key)


@pytest.fixture(scope="module")
def libraries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parent of every library the worker tests scan: the workers' one configured library root."""
    return tmp_path_factory.mktemp("libraries")


WORKER_READY_SECONDS = 180


def wait_ready(proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WORKER_READY_SECONDS
    while b" ready." not in log.read_bytes():
        assert proc.poll() is None, f"worker exited early:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"worker not ready:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def one_worker(pg_schema_url, libraries, tmp_path_factory) -> Iterator[dict]:
    """One ``genretag worker`` with a single pool process, short time limits and ``max_attempts`` 2."""
    from conftest import REDIS_BASE_URL

    redis_url = f"{REDIS_BASE_URL}/{os.environ.get('GENRETAG_TEST_REDIS_DB', '11')}"
    log = tmp_path_factory.mktemp("worker-log") / "worker.log"
    with private_queue(redis_url) as queue:
        env = genretag_env(
            database_url=pg_schema_url, broker_url=redis_url, task_queue=queue, workers=1, max_attempts=2,
            task_soft_time_limit=15, task_time_limit=30, library_roots=libraries,
        )
        env = faulty_decoder(env)
        with celery_worker(env, log) as proc:
            wait_ready(proc, log)
            yield {"env": env, "proc": proc, "log": log, "url": pg_schema_url}


def done_once_after_a_kill(url: str, paths: list[str], victim: Path, fault: str, expected: str, detail: str) -> None:
    """The killed task's track was redelivered and finished on its second attempt; nothing lost or doubled."""
    status, error, attempts = track_rows(url)[str(victim)]
    totals = audit(url, paths)
    ok = status == "done" and attempts == 2 and totals["lost"] == 0 and totals["duplicated"] == 0
    report(fault, expected, f"{status}, attempt {attempts}, {detail}", ok, **totals)
    assert (status, attempts) == ("done", 2), (status, error, attempts)
    assert totals == {"found": len(paths), "done": len(paths), "failed": 0, "lost": 0, "duplicated": 0}


def test_sigkill_of_a_worker_mid_task_redelivers_it_and_it_finishes_once(one_worker: dict, libraries, gtzan_dir) -> None:
    root = libraries / "sigkill"
    clips = copy_clips(gtzan_dir, root, 3)
    victim = write_m4a(root / "slow-victim.m4a")  # the faulty decoder takes 2 s over it: time to kill
    paths = [str(p) for p in [*clips, victim]]
    proc = run_scan(one_worker["env"], root, "--no-wait", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    url = one_worker["url"]
    wait_until(lambda: track_rows(url).get(str(victim), ("", None, 0))[2] == 1, 120, "the victim's first attempt")
    time.sleep(0.5)  # inside the decoder now
    children = pool_children(one_worker["proc"].pid)
    assert children, "no pool process to kill"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: settled(url, paths), 180, "every track to settle after the kill")
    done_once_after_a_kill(url, paths, victim, "SIGKILL of the pool process mid-task",
                           "redelivered, done once (attempt 2), 1 prediction", f"killed pid {children}")


def test_poison_files_that_hang_or_crash_the_decoder_end_failed(one_worker: dict, libraries, gtzan_dir) -> None:
    root = libraries / "poison"
    clips = copy_clips(gtzan_dir, root, 2)
    hang, crash = write_m4a(root / "hang-forever.m4a"), write_m4a(root / "crash-worker.m4a")
    paths = [str(p) for p in [*clips, hang, crash]]
    proc = run_scan(one_worker["env"], root, "--no-wait", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    url = one_worker["url"]
    wait_until(lambda: settled(url, paths), 240, "the poison files to end")
    rows, totals = track_rows(url), audit(url, paths)
    for path, expected, fragment in ((hang, "failed: timed out (soft time limit), 1 attempt", "timed out"),
                                     (crash, "failed after max_attempts=2 deaths of its worker", "gave up after 2 attempts")):
        status, error, attempts = rows[str(path)]
        report(f"poison: decoder {'hangs' if path == hang else 'kills its worker'} ({path.name})", expected,
               f"{status} after {attempts} attempt(s): {error}", status == "failed" and fragment in (error or ""),
               counted=False, **audit(url, [str(path)]))
        assert status == "failed" and fragment in (error or ""), (path.name, status, error, attempts)
    report("poison library scan (2 clips, hang, crash)", "clips done, poison failed, scan settles",
           "settled", totals["done"] == 2 and totals["failed"] == 2, **totals)
    assert totals == {"found": 4, "done": 2, "failed": 2, "lost": 0, "duplicated": 0}


def test_a_task_for_a_path_outside_the_library_is_refused(one_worker: dict, libraries) -> None:
    from genretag.config import Settings
    from genretag.db import session_scope, store
    from genretag.worker.app import configure
    from genretag.worker.tasks import classify_track

    settings = Settings.from_env(one_worker["env"])
    before = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    with session_scope(settings.database_url) as session:
        scan_id = store.start_scan(session, str(libraries), "test", "celery").id
        st = os.stat("/etc/passwd")
        track_id = store.insert_tracks(session, [{"path": "/etc/passwd", "size": st.st_size, "mtime": st.st_mtime}], scan_id)["/etc/passwd"]
    configure(settings)
    classify_track.apply_async((track_id, scan_id), queue=settings.task_queue)
    wait_until(lambda: settled(settings.database_url, ["/etc/passwd"]), 60, "the /etc/passwd task")
    status, error, _ = track_rows(settings.database_url)["/etc/passwd"]
    ok = status == "failed" and "outside the configured library roots" in (error or "")
    report("queued task for /etc/passwd", "refused: outside the library roots", f"{status}: {error}", ok)
    assert ok, (status, error)
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == before


@pytest.fixture(scope="module")
def four_workers(pg_schema_url, libraries, tmp_path_factory) -> Iterator[dict]:
    from conftest import REDIS_BASE_URL

    redis_url = f"{REDIS_BASE_URL}/{os.environ.get('GENRETAG_TEST_REDIS_DB', '11')}"
    log = tmp_path_factory.mktemp("workers-log") / "worker.log"
    with private_queue(redis_url) as queue:
        env = genretag_env(database_url=pg_schema_url, broker_url=redis_url, task_queue=queue, workers=4,
                           library_roots=libraries)
        with celery_worker(env, log) as proc:
            wait_ready(proc, log)
            yield {"env": env, "proc": proc, "log": log, "url": pg_schema_url}


def test_forced_rescan_racing_a_scan_on_four_workers_keeps_one_prediction_each(four_workers: dict, libraries, gtzan_dir) -> None:
    root = libraries / "race"
    paths = [str(p) for p in copy_clips(gtzan_dir, root, 12)]
    before = snapshot(root)
    env = four_workers["env"]
    command = [GENRETAG, "scan", str(root)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    forced = subprocess.Popen([*command, "--force"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=300) for p in (first, forced)]
    codes = [first.returncode, forced.returncode]
    url = four_workers["url"]
    totals = audit(url, paths)
    worker_log = four_workers["log"].read_text()
    errors = [line for line in worker_log.splitlines() if "IntegrityError" in line or "UniqueViolation" in line]
    ok = codes == [0, 0] and not errors and totals["done"] == len(paths) and totals["duplicated"] == 0
    report("scan + forced rescan racing on 4 worker processes", "both exit 0, all done, 1 prediction per track",
           f"exits {codes}, {len(errors)} constraint errors", ok, **totals)
    after = snapshot(root)
    changed = [p for p, v in before.items() if after.get(p) != v]
    report("music files after 2 scans by 4 Celery workers", "bytes and mtimes unchanged", f"{len(changed)} changed",
           not changed)
    assert codes == [0, 0], [o[1][-2000:] for o in outs]
    assert not errors, errors[:5]
    assert not changed, changed
    assert totals == {"found": 12, "done": 12, "failed": 0, "lost": 0, "duplicated": 0}


# --- 2b. service restarts (slow): a private Redis and a private PostgreSQL ------------------


@contextmanager
def private_redis() -> Iterator[dict]:
    """A redis-server of our own on a spare port (no persistence, like the shared one), restartable."""
    port = free_port()
    command = [shutil.which("redis-server") or pytest.skip("redis-server not installed"), "--port", str(port),
               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    state = {"url": f"redis://127.0.0.1:{port}/0", "proc": None}

    def start() -> None:
        import redis

        state["proc"] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _pings(redis, state["url"]), 20, "the private redis-server")

    def stop() -> None:
        state["proc"].terminate()
        state["proc"].wait(20)

    state.update(start=start, stop=stop)
    start()
    try:
        yield state
    finally:
        if state["proc"].poll() is None:
            stop()


def _pings(redis, url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


@contextmanager
def private_postgres() -> Iterator[dict]:
    """A PostgreSQL cluster of our own (initdb as the postgres user in a temporary dir, spare port)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found or os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root, setpriv and /usr/lib/postgresql/*/bin to run a private PostgreSQL as postgres")
    bin_dir = Path(found[-1]).parent
    as_postgres = [shutil.which("setpriv"), "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    home = Path(tempfile.mkdtemp(prefix="genretag-faults-pg-"))
    shutil.chown(home, "postgres", "postgres")
    data, port = home / "data", free_port()
    subprocess.run([*as_postgres, bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120)
    ctl = [*as_postgres, bin_dir / "pg_ctl", "-D", data, "-l", home / "server.log", "-w", "-t", "60"]
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    state = {
        "url": f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
        "start": lambda: subprocess.run([*ctl, "-o", options, "start"], check=True, capture_output=True, timeout=90),
        "stop": lambda: subprocess.run([*ctl, "-m", "fast", "stop"], check=True, capture_output=True, timeout=90),
    }
    state["start"]()
    try:
        yield state
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=90)
        shutil.rmtree(home, ignore_errors=True)


def count_done(database_url: str, paths: list[str]) -> int:
    try:
        rows = track_rows(database_url)
    except Exception:  # noqa: BLE001 - the database may be the thing that is down
        return 0
    return sum(rows.get(p, ("",))[0] == "done" for p in paths)


@pytest.mark.slow
def test_redis_restart_mid_scan_then_a_rescan_completes_the_library(tmp_path, gtzan_dir) -> None:
    root = tmp_path / "library"
    paths = [str(p) for p in copy_clips(gtzan_dir, root, 24)]
    url = f"sqlite:///{tmp_path / 'db' / 'genretag.sqlite3'}"
    with private_redis() as redis_server:
        env = genretag_env(database_url=url, broker_url=redis_server["url"], task_queue="faults", workers=1,
                           task_soft_time_limit=8, task_time_limit=10, library_roots=root)
        with celery_worker(env, tmp_path / "worker.log") as worker:
            wait_ready(worker, tmp_path / "worker.log")
            producer = subprocess.Popen([GENRETAG, "scan", str(root)], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
            wait_until(lambda: count_done(url, paths) >= 3, 120, "the first tracks")
            redis_server["stop"]()
            time.sleep(3)
            redis_server["start"]()
            try:
                out, err = producer.communicate(timeout=240)
                producer_outcome = f"exit {producer.returncode}"
            except subprocess.TimeoutExpired:
                producer.kill()
                out, err = producer.communicate()
                producer_outcome = "still waiting after 240 s (killed)"
            loud = producer.returncode == 0 or bool(err.strip()) and producer_outcome.startswith("exit")
            done_before_rescan = count_done(url, paths)
            rescan = run_scan(env, root, timeout=300)
            worker_alive = worker.poll() is None
        totals = audit(url, paths)
    ok = loud and rescan.returncode == 0 and worker_alive and totals["lost"] == 0 and totals["duplicated"] == 0
    report("Redis restarted mid-scan (private redis-server, no persistence)",
           "producer finishes or fails loudly; worker reconnects; rescan completes",
           f"producer {producer_outcome} ({done_before_rescan} done); worker {'alive' if worker_alive else 'DEAD'}; "
           f"rescan exit {rescan.returncode}",
           ok, **totals)
    assert loud, err[-3000:]
    assert worker_alive and rescan.returncode == 0, rescan.stderr[-3000:]
    assert totals == {"found": 24, "done": 24, "failed": 0, "lost": 0, "duplicated": 0}


@pytest.mark.slow
def test_postgresql_stopped_while_workers_write_retries_and_records_once(tmp_path, gtzan_dir, redis_url) -> None:
    root = tmp_path / "library"
    paths = [str(p) for p in copy_clips(gtzan_dir, root, 16)]
    with private_postgres() as pg, private_queue(redis_url) as queue:
        env = genretag_env(database_url=pg["url"], broker_url=redis_url, task_queue=queue, workers=1,
                           library_roots=root)
        log = tmp_path / "worker.log"
        with celery_worker(env, log) as worker:
            wait_ready(worker, log)
            proc = run_scan(env, root, "--no-wait", timeout=120)
            assert proc.returncode == 0, proc.stderr[-3000:]
            wait_until(lambda: count_done(pg["url"], paths) >= 3, 120, "the first tracks")
            pg["stop"]()
            time.sleep(6)
            pg["start"]()
            wait_until(lambda: count_done(pg["url"], paths) == len(paths) or settled(pg["url"], paths), 300,
                       "every track after the outage")
            retries = log.read_text().count("Retry in")
        totals = audit(pg["url"], paths)
    ok = totals["done"] == len(paths) and totals["lost"] == 0 and totals["duplicated"] == 0 and retries > 0
    report("PostgreSQL stopped 6 s while a worker writes (private cluster)",
           "tasks retry with backoff, all done, nothing twice", f"{retries} task retries logged", ok, **totals)
    assert retries > 0, "no task retried: the outage missed the work"
    assert totals == {"found": 16, "done": 16, "failed": 0, "lost": 0, "duplicated": 0}


@pytest.mark.slow
def test_sigkill_of_the_whole_worker_mid_task_is_redelivered_after_the_visibility_timeout(
    pg_schema_url, libraries, gtzan_dir, redis_url, tmp_path
) -> None:
    """Main process and pool killed at once: nobody rejects the message; Redis hands it out again."""
    root = libraries / "whole-worker"
    clips = copy_clips(gtzan_dir, root, 2)
    victim = write_m4a(root / "slow-victim.m4a")
    paths = [str(p) for p in [*clips, victim]]
    with private_queue(redis_url) as queue:
        env = genretag_env(database_url=pg_schema_url, broker_url=redis_url, task_queue=queue, workers=1,
                           task_soft_time_limit=15, task_time_limit=20, library_roots=libraries)  # visibility 100 s
        env = faulty_decoder(env)
        with celery_worker(env, tmp_path / "first.log") as first:
            wait_ready(first, tmp_path / "first.log")
            proc = run_scan(env, root, "--no-wait", timeout=120)  # no producer left waiting to resend
            assert proc.returncode == 0, proc.stderr[-3000:]
            wait_until(lambda: track_rows(pg_schema_url).get(str(victim), ("", None, 0))[2] == 1, 120, "attempt 1")
            time.sleep(0.5)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        started = time.monotonic()
        with celery_worker(env, tmp_path / "second.log") as second:
            wait_ready(second, tmp_path / "second.log")
            wait_until(lambda: settled(pg_schema_url, paths), 300, "redelivery to the second worker")
            waited = time.monotonic() - started
    done_once_after_a_kill(pg_schema_url, paths, victim, "SIGKILL of the whole worker (main + pool) mid-task",
                           "redelivered after visibility timeout, done once", f"settled {waited:.0f} s after the kill")


@pytest.mark.slow
def test_a_hang_past_the_hard_time_limit_ends_failed_after_max_attempts(
    pg_schema_url, libraries, gtzan_dir, redis_url, tmp_path
) -> None:
    """No soft limit to catch it: the pool process is killed at the hard limit, each time, until the
    attempt count gives up, and the scan that queued it (not waiting) leaves nothing pending."""
    root = libraries / "hard-limit"
    clips = copy_clips(gtzan_dir, root, 1)
    hang = write_m4a(root / "hang-hard.m4a")
    paths = [str(clips[0]), str(hang)]
    with private_queue(redis_url) as queue:
        env = genretag_env(database_url=pg_schema_url, broker_url=redis_url, task_queue=queue, workers=1,
                           max_attempts=2, task_soft_time_limit=0, task_time_limit=6, library_roots=libraries)
        env = faulty_decoder(env)
        log = tmp_path / "worker.log"
        with celery_worker(env, log) as worker:
            wait_ready(worker, log)
            proc = run_scan(env, root, "--no-wait", timeout=120)
            assert proc.returncode == 0, proc.stderr[-3000:]
            started = time.monotonic()
            try:
                wait_until(lambda: settled(pg_schema_url, paths), 150, "the hanging file to end")
            except AssertionError:
                pass
            waited = time.monotonic() - started
            kills = log.read_text().count("Hard time limit")
    status, error, attempts = track_rows(pg_schema_url)[str(hang)]
    totals = audit(pg_schema_url, paths)
    ok = status == "failed" and "gave up after 2 attempts" in (error or "")
    report("poison: decoder hangs past the hard time limit (no soft limit)", "killed each time, failed after 2 attempts",
           f"{status} after {attempts} attempt(s), {kills} hard-limit kills, {waited:.0f} s: {error}", ok, **totals)
    assert ok, (status, error, attempts, kills)
    assert totals["lost"] == 0 and totals["duplicated"] == 0, totals
    assert not holders(hang), "a worker killed at the hard limit left a process holding the file"


# --- the tag writer (genretag tag --write) -----------------------------------------------------------


def tagged_genre(path: Path) -> str | None:
    from genretag.tags import read_tags

    return read_tags(path).genre


def test_tag_writer_reports_files_it_cannot_write_and_writes_the_rest(tmp_path, gtzan_dir) -> None:
    """A read-only file, one deleted between the scan and the write, and a WAV (no genre tag) fail with
    their reason; the good files beside them are written."""
    import soundfile as sf

    from genretag import audio

    root = tmp_path / "library"
    good = copy_clips(gtzan_dir, root, 3)
    readonly, vanished = good[1], good[2]
    wav = root / "plain.wav"
    sf.write(wav, audio.load(good[0], 22050)[: 22050 * 8], 22050)
    url = f"sqlite:///{tmp_path / 'db' / 'genretag.sqlite3'}"
    env = genretag_env(database_url=url, workers=2)
    scanned = run_scan(env, root)
    assert scanned.returncode == 0, scanned.stderr[-3000:]
    readonly.chmod(0o444)
    kept = readonly.read_bytes()
    vanished.unlink()
    proc = subprocess.run([GENRETAG, "tag", str(root), "--write", "--min-confidence", "0", "--include-uncertain"], env=env,
                          capture_output=True, text=True, timeout=300)
    failures = {line.split(": failed: ")[0]: line.split(": failed: ")[1] for line in proc.stderr.splitlines()
                if ": failed: " in line}
    cases = ((readonly, "read-only file"), (vanished, "file vanished"), (wav, "unsupported format"))
    for path, reason in cases:
        reported = failures.get(str(path), "")
        whole = path == vanished or tagged_genre(path) is None
        report(f"tag writer: {reason} ({path.name})", f"reported ({reason}), file untouched",
               reported or "not reported", reason in reported and whole, counted=False,
               found=1, done=0, failed=int(reason in reported), lost=int(not reported or not whole), duplicated=0)
    written = tagged_genre(good[0])
    report("tag --write beside unwritable files", "exit 1, the good file written",
           f"exit {proc.returncode}, good file tagged {written}", proc.returncode == 1 and written is not None,
           found=4, done=int(written is not None), failed=len(failures), lost=4 - len(failures) - int(written is not None),
           duplicated=0)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for path, reason in cases:
        assert reason in failures.get(str(path), ""), (path, failures)
    assert readonly.read_bytes() == kept and tagged_genre(wav) is None
    assert written is not None


def test_sigkill_during_tag_write_leaves_every_file_whole_with_its_old_or_new_tag(tmp_path, gtzan_dir) -> None:
    """40 files in five formats, recorded as a classification records them, written and killed at several moments."""
    from media import audio_hash, convert

    from genretag.classify import TrackResult
    from genretag.db import session_scope, store
    from genretag.producer.walk import is_audio_name
    from genretag.tags import TEMP_SUFFIX

    formats = (".mp3", ".ogg", ".opus", ".flac", ".m4a")
    sources = {ext: convert(gtzan_dir / "rock" / "rock.00002.opus", tmp_path / "src" / f"clip{ext}", 10.0)
               for ext in formats}
    hashes = {ext: audio_hash(path) for ext, path in sources.items()}
    library, url = tmp_path / "library", f"sqlite:///{tmp_path / 'db.sqlite3'}"
    paths = []
    for i in range(40):
        ext, folder = formats[i % len(formats)], library / f"d{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(Path(shutil.copy(sources[ext], folder / f"f{i:02d}{ext}")))
    with session_scope(url) as s:
        scan_id = store.start_scan(s, str(library), "v-test", "local").id
        ids = store.insert_tracks(s, [{"path": str(p), "size": p.stat().st_size, "mtime": p.stat().st_mtime}
                                      for p in paths], scan_id)
        for p in paths:
            store.record_prediction(s, ids[str(p)], TrackResult(
                path=str(p), genre="rock", confidence=0.9, uncertain=None, runner_up=None, vote_share=0.9, mean_probability=0.9, probabilities={"rock": 0.9},
                votes={"rock": 9}, segments_used=3, segment_mode="all", duration=10.0, format="x",
                model_version="v-test"))
    kills, partial, broken = 0, 0, []
    for delay in (0.05, 0.1, 0.2, 0.4):
        proc = subprocess.Popen([GENRETAG, "tag", str(library), "--write"], env=genretag_env(database_url=url),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:  # the first write, then a little more
            if ": written:" in proc.stdout.readline():
                time.sleep(delay)
                break
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        partial += any(library.rglob(f"*{TEMP_SUFFIX}"))
        assert not any(is_audio_name(p.name) for p in library.rglob(f"*{TEMP_SUFFIX}"))
        broken += [p for p in paths if audio_hash(p) != hashes[p.suffix] or tagged_genre(p) not in (None, "rock")]
    final = subprocess.run([GENRETAG, "tag", str(library), "--write"], env=genretag_env(database_url=url),
                           capture_output=True, text=True, timeout=300)
    untagged = [p for p in paths if tagged_genre(p) != "rock"]
    leftovers = list(library.rglob(f"*{TEMP_SUFFIX}"))  # copies of killed writes: the rerun removes them
    report("tag writer SIGKILLed mid-write (4 kills, 40 files)", "every file decodes, old or new tag; a rerun completes",
           f"{kills} kills ({partial} left a partial copy), {len(set(broken))} broken, "
           f"{len(untagged)} untagged after the rerun",
           kills >= 1 and not broken and not untagged and not leftovers,
           found=len(paths), done=len(paths) - len(untagged), failed=0, lost=len(set(broken)) + len(untagged),
           duplicated=0)
    assert kills >= 1 and not broken, broken
    assert final.returncode == 0 and not untagged, final.stderr[-3000:]
    assert not leftovers
