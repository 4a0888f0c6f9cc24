"""Evaluation: figures computed by hand on known probabilities, and the command's JSON report and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from genretag.cli import cli
from genretag.training.datasets import Clip, TrackFeatures
from genretag.training.evaluate import select_tracks, track_metrics

LABELS = ("blues", "jazz", "rock")


def _track(track_id: str, genre: str, segments: int = 3, excerpt: bool = False) -> TrackFeatures:
    return TrackFeatures(Clip(track_id, genre, Path(track_id), excerpt), np.zeros((segments, 130, 13), np.float32))


def _probs(winners: list[int]) -> np.ndarray:
    p = np.full((len(winners), len(LABELS)), 0.1, np.float32)
    p[np.arange(len(winners)), winners] = 0.8
    return p


def test_track_metrics_vote_like_inference_and_balance_genres() -> None:
    tracks = [_track("b1", "blues"), _track("b2", "blues"), _track("b3", "blues"), _track("j1", "jazz")]
    probabilities = [
        _probs([0, 0, 1]),  # blues by 2 votes to 1: right
        _probs([0, 0, 0]),  # right
        _probs([1, 1, 0]),  # jazz by majority: wrong, though a segment says blues
        _probs([1, 2, 1]),  # right
    ]
    m = track_metrics(tracks, probabilities, LABELS)

    assert m["segment_accuracy"] == round(8 / 12, 4)
    assert m["track_accuracy"] == 0.75
    assert m["balanced_track_accuracy"] == round((2 / 3 + 1) / 2, 4)  # rock has no track: not averaged in
    assert m["per_genre"]["jazz"] == {"precision": 0.5, "recall": 1.0, "f1": round(2 / 3, 4), "support": 1}
    assert m["per_genre"]["rock"]["support"] == 0
    assert m["confusion"] == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert m["errors"] == [{"track": "b3", "true": "blues", "predicted": "jazz"}]


def test_excerpts_are_never_evaluated() -> None:
    tracks = [_track("b1", "blues"), _track("b2", "blues", 1, excerpt=True), _track("j1", "jazz")]
    sides = {"b1": "test", "b2": "test", "j1": "valid"}
    assert [t.clip.track_id for t in select_tracks(tracks, sides, "test")] == ["b1"]
    assert [t.clip.track_id for t in select_tracks(tracks, sides, "all")] == ["b1", "j1"]


def test_evaluate_command_writes_json_and_confusion_png(synthetic_gtzan: Path, training_cache: Path, tmp_path: Path) -> None:
    model = tmp_path / "tiny.genretag"
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "--data", str(synthetic_gtzan), "--epochs", "2", "--threads", "2",
                                  "--out", str(model)])
    assert trained.exit_code == 0, trained.output

    result = runner.invoke(cli, ["evaluate", str(model), "--data", str(synthetic_gtzan), "--split", "test",
                                 "--out", str(tmp_path / "report")])

    assert result.exit_code == 0, result.output
    assert "balanced track accuracy" in result.output
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    for key in ("model_version", "split", "tracks", "segments", "segment_accuracy", "track_accuracy",
                "balanced_track_accuracy", "per_genre", "confusion", "labels", "errors"):
        assert key in report
    assert report["split"] == "test" and report["tracks"] == 6
    assert set(report["per_genre"]["blues"]) == {"precision", "recall", "f1", "support"}
    assert (tmp_path / "report" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_majority_of_argmaxes_is_reported_beside_the_track_vote() -> None:
    # Two segments lean blues (0.40 vs 0.35 jazz), one is sure of jazz (0.95): most segments say blues,
    # the mean probability says jazz.
    p = np.array([[0.40, 0.35, 0.25], [0.40, 0.35, 0.25], [0.025, 0.95, 0.025]], np.float32)
    m = track_metrics([_track("b1", "blues")], [p], LABELS)
    assert m["track_accuracy_majority_vote"] == 1.0
    assert m["track_accuracy"] == 0.0
    assert m["errors"] == [{"track": "b1", "true": "blues", "predicted": "jazz"}]
