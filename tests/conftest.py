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


# --- services and libraries for the database, producer and worker tests ---------------------

PG_BASE_URL = os.environ.get("GENRETAG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_BASE_URL = os.environ.get("GENRETAG_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'db' / 'genretag.sqlite3'}"


@pytest.fixture
def pg_url() -> str:
    """A PostgreSQL URL whose search_path is a schema of its own, dropped after the test.

    Parallel runs and other tests never see each other's tables; the URL carries the schema, so a
    worker subprocess given it lands in the same place.
    """
    import uuid

    from sqlalchemy import create_engine, text

    from genretag.db.engine import forget_engine

    schema = f"gt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - say which service is missing
        pytest.fail(f"PostgreSQL not reachable at {PG_BASE_URL}: {exc}")
    url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    yield url
    forget_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def redis_url() -> str:
    """A Redis broker URL on a db number of its own (GENRETAG_TEST_REDIS_DB, default 11), checked up."""
    import redis

    url = f"{REDIS_BASE_URL}/{os.environ.get('GENRETAG_TEST_REDIS_DB', '11')}"
    try:
        redis.Redis.from_url(url).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis not reachable at {url}: {exc}")
    return url


@pytest.fixture
def task_queue(redis_url: str) -> str:
    """A Celery queue name used by one test only; its Redis keys are deleted afterwards."""
    import uuid

    import redis

    name = f"genretag-test-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"*{name}*"):
        client.delete(key)


@pytest.fixture(scope="session")
def real_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small real music library (13 full-length mp3/ogg tracks), built once per session."""
    import subprocess

    dest = tmp_path_factory.mktemp("real-library")
    script = SHARED / "tools" / "real-music-library.sh"
    subprocess.run(["bash", str(script), str(dest), "small"], check=True, capture_output=True, text=True)
    return dest


# --- synthetic GTZAN for the training and evaluation tests ------------------------------------


def write_synthetic_clip(path: Path, kind: str, seed: int, seconds: float = 9.0, sr: int = 22050, **sf_kwargs) -> Path:
    """A clip of low sine tones (``kind="tones"``) or white-noise bursts (``"noise"``); easy to tell apart."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if kind == "tones":
        f0 = rng.uniform(80, 200)
        y = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.15 * np.sin(2 * np.pi * 2 * f0 * t + rng.uniform(0, 6))
    else:
        gate = (np.floor(t * rng.uniform(3, 6)) % 2 == 0).astype(float)
        y = 0.3 * rng.standard_normal(len(t)) * gate
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr, **sf_kwargs)
    return path


@pytest.fixture(scope="session")
def synthetic_gtzan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GTZAN in the Kaggle layout: 20 "blues" clips of sine tones, 20 "metal" clips of noise bursts."""
    root = tmp_path_factory.mktemp("synthetic-gtzan")
    for genre, kind in (("blues", "tones"), ("metal", "noise")):
        for i in range(20):
            write_synthetic_clip(root / "Data" / "genres_original" / genre / f"{genre}.{i:05d}.wav", kind, seed=i + 1000 * (kind == "noise"))
    return root


@pytest.fixture
def training_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the feature cache (GENRETAG_CACHE_DIR) at a temporary folder for one test."""
    from genretag.config import get_settings

    cache = tmp_path / "cache"
    monkeypatch.setenv("GENRETAG_CACHE_DIR", str(cache))
    get_settings.cache_clear()
    yield cache
    get_settings.cache_clear()


# --- slow faults (tests/test_faults.py) --------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="Also run tests marked slow.")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
