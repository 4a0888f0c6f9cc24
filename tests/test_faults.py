"""Reliability faults with real processes: bad input, killed workers, restarted services, races.

Every test scans a real library with the real ``genretag`` command (local mode or Celery workers
over Redis, SQLite or PostgreSQL) and audits the database afterwards: each file is a track that
ended done or failed with a reason, none is lost (left pending or never recorded), none has two
predictions from one model. Each test also appends rows to the file named by
``GENRETAG_FAULT_REPORT`` when set; ``bench/faults.py`` prints them as one table.

The slow faults (2-hour file, Redis and PostgreSQL restarts) run with ``--run-slow``.
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
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from badinput import BadInput, make_corpus
from genretag.db.models import Prediction, Track

BIN = Path(sys.executable).parent
GENRETAG = str(BIN / "genretag")
SECRET = "s3cret-Pa55word"


# --- reporting ------------------------------------------------------------------------------


def report(fault: str, expected: str, actual: str, ok: bool, **totals: int) -> None:
    """One row of the runner's table (no-op unless GENRETAG_FAULT_REPORT names a file)."""
    target = os.environ.get("GENRETAG_FAULT_REPORT")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"fault": fault, "expected": expected, "actual": actual, "ok": ok, **totals}) + "\n")


def audit(database_url: str, expected_paths: list[str]) -> dict[str, int]:
    """Found, done, failed, lost and duplicated over the files that must each end as one track.

    Lost: a file with no track, or one left pending. Duplicated: extra track rows for one path and
    extra predictions for one (track, model version).
    """
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Track.path, Track.status)).all()
            dup_predictions = conn.scalar(
                select(func.coalesce(func.sum(text("n") ), 0)).select_from(
                    select((func.count() - 1).label("n"))
                    .select_from(Prediction)
                    .group_by(Prediction.track_id, Prediction.model_version)
                    .subquery()
                )
            )
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
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "GENRETAG_TF_THREADS": "1", "PYTHONUNBUFFERED": "1"})
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


FAKE_FFMPEG = textwrap.dedent(
    """\
    #!{python}
    # A stand-in for ffmpeg (an external program, like the real one): it decodes the WAV data the
    # file holds, after a delay or never, or kills the process that called it, by the file's name.
    import os, signal, sys, time
    import numpy as np, soundfile as sf, soxr
    args = sys.argv[1:]
    src, sr = args[args.index("-i") + 1], int(args[args.index("-ar") + 1])
    name = os.path.basename(src)
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("crash"):
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
    if name.startswith("slow"):
        time.sleep(float(os.environ.get("FAKE_FFMPEG_DELAY", "4")))
    y, native = sf.read(src, dtype="float32", always_2d=True, format="WAV")
    sys.stdout.buffer.write(soxr.resample(y.mean(axis=1), native, sr).astype("float32").tobytes())
    """
)


@pytest.fixture(scope="module")
def fake_ffmpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory to put first on PATH: its ``ffmpeg`` decodes slowly, hangs or crashes by file name."""
    bin_dir = tmp_path_factory.mktemp("fake-ffmpeg")
    script = bin_dir / "ffmpeg"
    script.write_text(FAKE_FFMPEG.format(python=sys.executable))
    script.chmod(0o755)
    return bin_dir


def write_m4a(path: Path, seconds: float = 8.0) -> Path:
    """A file with an ffmpeg-only extension; its bytes are WAV, which the fake ffmpeg decodes."""
    from badinput import _music
    import soundfile as sf

    sf.write(path, _music(seconds, seed=len(path.name)), 22050, format="WAV")
    return path


def copy_clips(gtzan: Path, dest: Path, n: int) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(sorted((gtzan / "blues").glob("*.opus"))[:n]):
        out.append(Path(shutil.copyfile(src, dest / f"clip{i:02d}.opus")))
    return out


@contextmanager
def celery_worker(env: dict[str, str], log: Path, name: str) -> Iterator[subprocess.Popen]:
    """A ``genretag worker`` process (Celery prefork), stopped (TERM, then KILL) afterwards."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [GENRETAG, "worker", "--loglevel", "info"], env={**env, "CELERY_HOSTNAME": name},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


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
    wrong = []
    for case in bad_scan["cases"]:
        status, error, _ = rows.get(str(case.path), (None, None, 0))
        actual = "no track (walked past)" if status is None else f"{status}" + (f": {error}" if error else "")
        ok = case.matches(status, error)
        expected = case.expect + (f" ({case.reason})" if case.reason else "")
        if case.path.is_symlink() and case.expect == "walked" and status is None:
            ok = f"{case.path}: {case.reason}" in bad_scan["proc"].stderr  # said in the log, not dropped silently
            actual += ", logged" if ok else ", NOT logged"
        report(f"bad input: {case.kind}", expected, actual, ok,
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
