"""The runtime path as a user runs it, in a fresh interpreter: no TensorFlow imported, no library noise on stderr.

Each test runs the real ``genretag`` command line inside ``python -c``, then reports which modules the
process loaded (scipy too: the default musicnn bundle's path needs none, and it costs 29 MB per
process). TF_CPP_MIN_LOG_LEVEL is taken out of the environment: quiet must not depend on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from genretag.bundle import GENRES

RUN = """
import json, sys
from genretag.cli import main
sys.argv = ['genretag', *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    status = exc.code
loaded = {m.split('.')[0] for m in sys.modules}
print(json.dumps({'exit': status, 'training': sorted(loaded & {'tensorflow', 'keras', 'tf_keras'}),
                  'litert': 'ai_edge_litert' in loaded, 'scipy': 'scipy' in loaded}))
"""


def genretag(*args: str, env: dict[str, str] | None = None) -> tuple[list[str], dict, str]:
    """Run ``genretag ARGS``: its stdout lines before the report, the report, and stderr."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", RUN, *args], env=env, capture_output=True, text=True, timeout=600)
    *out, report = proc.stdout.splitlines()
    return out, json.loads(report), proc.stderr


def test_classify_runs_litert_without_tensorflow_and_prints_no_noise(gtzan_dir: Path) -> None:
    clip = gtzan_dir / "disco" / "disco.00003.opus"
    out, report, stderr = genretag("classify", "--json", str(clip))
    assert report == {"exit": 0, "training": [], "litert": True, "scipy": False}
    assert stderr == ""
    (line,) = out
    result = json.loads(line)
    assert result["genre"] in GENRES and result["segments_used"] >= 9 and result["segment_mode"] == "all"


def test_a_local_scan_prints_only_its_own_lines(gtzan_dir: Path, tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    for genre in ("jazz", "metal"):
        shutil.copy(gtzan_dir / genre / f"{genre}.00004.opus", library)
    out, report, stderr = genretag("scan", str(library), env={
        "GENRETAG_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "GENRETAG_BROKER_URL": "",
        "GENRETAG_WORKERS": "1"})
    assert report == {"exit": 0, "training": [], "litert": True, "scipy": False}
    assert stderr.splitlines() == [f"scanning {library} (local mode; database sqlite:///{tmp_path / 'db.sqlite3'})"]
    assert out == [f"{library}: found 2 (2 new, 0 changed, 0 unchanged), 0 missing; queued 2: 2 done, 0 failed"]
