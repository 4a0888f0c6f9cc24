"""``uncertain`` end to end on real files: classify --json, then a Celery scan into PostgreSQL, then query and stats."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from genretag.classify import Classifier
from genretag.cli import cli
from genretag.config import Settings
from genretag.db import Prediction, Track, session_scope
from test_e2e import running, scan_within, worker_options

CLIPS = ["blues/blues.00003.opus", "classical/classical.00001.opus", "jazz/jazz.00007.opus", "metal/metal.00002.opus",
         "pop/pop.00004.opus", "rock/rock.00005.opus", "country/country.00006.opus"]


def invoke(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_uncertain_calls_go_from_scan_to_the_database_to_query(
    tmp_path: Path, gtzan_dir: Path, real_library: Path, pg_url: str, redis_url: str, task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    library = tmp_path / "library"
    for clip in CLIPS:
        (library / clip).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(gtzan_dir / clip, library / clip)
    for track in sorted(p for p in real_library.rglob("*.*") if p.is_file())[:2]:  # full-length: staged windows
        shutil.copy(track, library / track.name)
    files = sorted(str(p) for p in library.rglob("*.*"))

    # classify --json: a flag, probabilities summing to 1, confidence = the stored genre's probability.
    lines = invoke("classify", "--json", *files).splitlines()
    results = {r["path"]: r for r in map(json.loads, lines)}
    for r in results.values():
        assert isinstance(r["uncertain"], bool) and 0 < r["vote_share"] <= 1
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert r["confidence"] == pytest.approx(r["probabilities"][r["genre"]])
        assert r["genre"] == max(r["probabilities"], key=r["probabilities"].get)

    # A threshold between the calls, so some are uncertain and some are not.
    confidences = sorted(r["confidence"] for r in results.values())
    middle = len(confidences) // 2
    threshold = (confidences[middle - 1] + confidences[middle]) / 2
    expected_uncertain = sorted(p for p, r in results.items() if r["confidence"] < threshold)
    assert 0 < len(expected_uncertain) < len(files)
    monkeypatch.setenv("GENRETAG_MIN_CONFIDENCE", repr(threshold))
    in_process = Classifier.load(Settings.from_env())
    for path in expected_uncertain:
        call = in_process.classify(path)
        assert call.uncertain and call.label().startswith(f"uncertain: {call.genre}")

    settings = Settings(database_url=pg_url, broker_url=redis_url, task_queue=task_queue, workers=2, inference_threads=1)
    command = [sys.executable, "-m", "celery", "-A", "genretag.worker.app", "worker", *worker_options(task_queue)]
    with running(command, settings, tmp_path / "worker.log") as worker:  # the worker reads GENRETAG_MIN_CONFIDENCE
        summary = scan_within(library, settings, worker, tmp_path / "worker.log")
    assert (summary.counts.done, summary.counts.failed) == (len(files), 0)

    with session_scope(pg_url) as s:
        rows = s.execute(select(Track.path, Prediction).join(Prediction, Prediction.track_id == Track.id)).tuples()
        stored = {path: (p.genre, p.confidence, p.uncertain, p.vote_share, p.runner_up) for path, p in rows}
    assert sorted(stored) == files
    for path, (genre, confidence, uncertain, vote_share, runner_up) in stored.items():
        want = results[path]
        assert (genre, uncertain) == (want["genre"], want["confidence"] < threshold)
        assert confidence == pytest.approx(want["confidence"], abs=1e-5)
        assert vote_share == pytest.approx(want["vote_share"]) and runner_up == want["runner_up"]

    url = ["--database-url", pg_url]
    listed = json.loads(invoke(*url, "query", "--uncertain", "--json"))
    assert sorted(r["path"] for r in listed) == expected_uncertain and all(r["uncertain"] for r in listed)
    confident = json.loads(invoke(*url, "query", "--confident", "--json"))
    assert sorted(r["path"] for r in confident) == sorted(set(files) - set(expected_uncertain))
    table = invoke(*url, "query", "--uncertain").splitlines()[1:]
    assert len(table) == len(expected_uncertain) and all("uncertain: " in line for line in table)
    stats = json.loads(invoke(*url, "stats", "--json"))
    assert stats["uncertain"] == len(expected_uncertain)
    assert stats["uncertain_share"] == pytest.approx(len(expected_uncertain) / len(files), abs=1e-4)
