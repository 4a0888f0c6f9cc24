"""Shared fixtures: real data, real services. Engineers add fixtures here with small edits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENRETAG_SHARED_DIR", REPO.parent / "shared"))
GTZAN = SHARED / "gtzan"


@pytest.fixture(scope="session")
def gtzan_dir() -> Path:
    """The GTZAN Opus subset that sits beside the repo (as in CI)."""
    if not (GTZAN / "blues").is_dir():
        pytest.fail(f"GTZAN data not found at {GTZAN}; CI puts ../shared beside the clone")
    return GTZAN
