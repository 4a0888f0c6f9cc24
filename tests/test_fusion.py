"""Fusion rules, temperature scaling, the uncertain call and the precision-coverage threshold, on cases built here."""

from __future__ import annotations

import numpy as np
import pytest

from genretag.fusion import Fusion, call, softmax
from genretag.training import calibrate

LABELS = ("blues", "classical", "jazz", "rock")


def overconfident(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities from logits three times too sharp: the truth is drawn from softmax(z), the model says softmax(3 z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, size=(n, len(LABELS)))
    truth = np.array([rng.choice(len(LABELS), p=p) for p in softmax(z)])
    return softmax(3 * z), truth


def test_temperature_scaling_lowers_nll_and_ece_of_an_overconfident_model() -> None:
    probs, y = overconfident()
    t = calibrate.fit_temperature(np.log(probs), y)
    assert t == pytest.approx(3.0, rel=0.15)  # it recovers how much too sharp the model is
    after = Fusion("log", 1.0, t)(probs, None)
    assert calibrate.nll(after, y) < calibrate.nll(probs, y) - 0.1
    assert calibrate.ece(after, y) < 0.04 < calibrate.ece(probs, y)
    np.testing.assert_array_equal(after.argmax(1), probs.argmax(1))  # a temperature never changes the genre
    held = calibrate.cross_fitted(np.log(probs), y)
    assert calibrate.nll(held, y) < calibrate.nll(probs, y) - 0.1
    folds = np.arange(len(y)) % 5 + 1  # the CV's own folds keep the same promise
    assert calibrate.nll(calibrate.cross_fitted(np.log(probs), y, fold_of=folds), y) < calibrate.nll(probs, y) - 0.1
    floor = calibrate.ece_if_calibrated(after[:300])  # 300 tracks: even a calibrated model shows some ECE
    assert 0.01 < floor["median"] < floor["p95"] < calibrate.ece(probs, y)
    assert calibrate.ece_if_calibrated(softmax(np.log(probs[:300]) / 3))["median"] == pytest.approx(floor["median"], abs=0.02)


def test_fusion_rules_weights_and_rows_summing_to_one() -> None:
    cnn = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    desc = np.array([[0.1, 0.1, 0.7, 0.1], [0.0, 0.0, 1.0, 0.0]])
    np.testing.assert_allclose(Fusion("linear", 1.0)(cnn, desc), cnn, atol=1e-6)
    np.testing.assert_allclose(Fusion("log", 0.0)(cnn, desc)[0], desc[0], atol=1e-6)
    for rule in ("linear", "log"):
        fused = Fusion(rule, 0.5, 1.7)(cnn, desc)
        np.testing.assert_allclose(fused.sum(axis=1), 1.0)
        assert fused[1].argmax() == 2  # the CNN has no opinion: the descriptor network decides
    # The geometric mean sides with the genre both models allow; the arithmetic mean splits the difference.
    assert Fusion("log", 0.5)(cnn, desc)[0, 0] == pytest.approx(Fusion("log", 0.5)(cnn, desc)[0, 2])
    with pytest.raises(ValueError, match="unknown fusion rule"):
        Fusion("max")


def test_choose_fusion_prefers_the_informative_model() -> None:
    """A CNN that knows the genre and a descriptor network that guesses: the choice leans on the CNN."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, len(LABELS), 400)
    cnn = softmax(2.5 * np.eye(len(LABELS))[y] + rng.normal(0, 1, (400, len(LABELS))))
    noise = softmax(rng.normal(0, 1, (400, len(LABELS))))
    chosen, grid = calibrate.choose_fusion(cnn, noise, y)
    assert chosen.weight >= 0.8 and len(grid) == 2 * len(calibrate.WEIGHTS)
    assert min(r["nll"] for r in grid) == pytest.approx(calibrate.nll(chosen(cnn, noise), y), abs=1e-3)


def test_call_marks_uncertain_and_names_a_close_runner_up() -> None:
    close = call(np.array([0.1, 0.42, 0.41, 0.07]), LABELS, min_confidence=0.6, close=0.5)
    assert (close.genre, close.uncertain, close.runner_up) == ("classical", True, "jazz")
    assert close.label() == "uncertain: classical or jazz" and close.confidence == pytest.approx(0.42)
    far = call(np.array([0.05, 0.55, 0.25, 0.15]), LABELS, min_confidence=0.6, close=0.5)
    assert far.label() == "uncertain: classical" and far.runner_up is None
    sure = call(np.array([0.9, 0.04, 0.03, 0.03]), LABELS, min_confidence=0.6, close=0.5)
    assert sure.label() == "blues" and not sure.uncertain


def test_default_threshold_is_the_lowest_from_which_precision_holds() -> None:
    # Confidence 0.3-0.9: tracks above 0.6 are right, those below mostly wrong.
    conf = np.linspace(0.3, 0.9, 61)
    y = np.where(conf >= 0.6, 0, 1)
    y[::7] = 0  # a few lucky low-confidence calls
    probs = np.stack([conf, *[(1 - conf) / 3] * 3], axis=1)  # blues is always the call
    curve = calibrate.precision_coverage(probs, y, np.round(np.arange(0, 1, 0.05), 2))
    chosen = calibrate.default_threshold(curve, 0.85)
    assert chosen["precision"] >= 0.85
    assert all(r["precision"] >= 0.85 for r in curve if r["threshold"] >= chosen["threshold"])
    below = [r for r in curve if r["threshold"] < chosen["threshold"]]
    assert below and below[-1]["precision"] < 0.85
    assert (chosen["threshold"], chosen["tracks"], chosen["precision"]) == (0.55, 36, pytest.approx(32 / 36, abs=1e-4))


def test_default_threshold_never_goes_below_even_odds() -> None:
    # Every call right: the curve alone would pick 0; the floor keeps calls the model rates under 0.5 uncertain.
    conf = np.linspace(0.2, 0.95, 40)
    probs = np.stack([conf, *[(1 - conf) / 3] * 3], axis=1)
    curve = calibrate.precision_coverage(probs, np.zeros(len(conf), int), np.round(np.arange(0, 1, 0.05), 2))
    assert calibrate.default_threshold(curve, 0.85, floor=0.0)["threshold"] == 0.0
    assert calibrate.default_threshold(curve, 0.85)["threshold"] == calibrate.EVEN_ODDS


def test_fuse_refuses_a_bundle_that_already_holds_a_descriptor_network(gtzan_dir, tmp_path) -> None:
    """Fusing again would keep the old network's section beside the new choice (or stack versions): refused."""
    from click.testing import CliRunner

    from genretag.cli import cli
    from genretag.config import PACKAGED_MODELS

    repo = PACKAGED_MODELS.parents[1]
    out = tmp_path / "twice.genretag"
    res = CliRunner().invoke(cli, ["fuse", str(PACKAGED_MODELS / "cnn.genretag"), "--data", str(gtzan_dir),
                                   "--cnn-cv", str(repo / "docs/cv/cv-gap-shifted-perseg.json"),
                                   "--search", str(repo / "docs/cv/descriptor-search.json"), "--out", str(out)])
    assert res.exit_code != 0 and "already holds a descriptor network" in res.output
    assert not out.exists()
