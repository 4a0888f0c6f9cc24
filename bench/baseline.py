"""The old runtime (Keras on TensorFlow, format-1 bundle) as it last shipped, for benches to run beside ours.

``tree()`` extracts the ``genretag`` package of commit ``BASELINE_REF`` (the last one whose classify,
workers and local mode ran TensorFlow) into a temporary folder; ``python -m genretag.cli`` with that
folder first on ``PYTHONPATH`` and as its working directory (``-m`` puts the working directory
before ``PYTHONPATH``: run from the repository, it would be ours) runs the old product, with the
same virtualenv (which has TensorFlow: the ``test`` extra).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE_REF = "9e82c50"


def tree(ref: str = BASELINE_REF) -> Path:
    """A folder holding the ``genretag`` package at ``ref`` (extracted once per ref)."""
    root = Path(tempfile.gettempdir()) / f"genretag-baseline-{ref}"
    if not (root / "genretag" / "cli.py").exists():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "genretag"], check=True, capture_output=True)
        with tempfile.TemporaryFile() as tar:
            tar.write(archive.stdout)
            tar.seek(0)
            tarfile.open(fileobj=tar).extractall(root, filter="data")
    return root


def env(ref: str = BASELINE_REF, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment whose ``python -m genretag.cli`` is the old product (TensorFlow log level as it set it)."""
    out = dict(os.environ if base is None else base)
    out["PYTHONPATH"] = os.pathsep.join([str(tree(ref)), *filter(None, [out.get("PYTHONPATH")])])
    return out
