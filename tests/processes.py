"""Long-running real processes for tests (Celery workers, beat), always stopped afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def background(cmd: Sequence[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in its own process group, output appended to ``log``; TERM (then KILL) the group after."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
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


FAULTY_DECODER = Path(__file__).parent / "faultydecoder"


def faulty_decoder(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the decoder library that hangs, crashes or is slow by file name (faultydecoder/)."""
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(FAULTY_DECODER), env.get("PYTHONPATH")) if p)}


GENRETAG = str(Path(sys.executable).parent / "genretag")


def run_genretag(database_url: str, *args: str, timeout: float = 900, **settings: object) -> subprocess.CompletedProcess:
    """The real ``genretag`` command on ``database_url``, with no GENRETAG_* setting but ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENRETAG_")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "GENRETAG_TF_THREADS": "1", "GENRETAG_WORKERS": "2",
                "GENRETAG_DATABASE_URL": database_url})
    env.update({f"GENRETAG_{k.upper()}": str(v) for k, v in settings.items()})
    return subprocess.run([GENRETAG, *args], env=env, capture_output=True, text=True, timeout=timeout)
