"""Choose the fusion rule and weight, fit the temperature, and measure calibration, on out-of-fold tracks.

Inputs are per-track probabilities that no model saw in training: the CNN's cross-validation
vote and the descriptor network's cross-validation output, for the same train+valid tracks. The
test split never enters. Figures: NLL, expected calibration error (ECE, 15 equal-width bins of
confidence), a reliability diagram, and the precision-versus-coverage curve that sets the default
``GENRETAG_MIN_CONFIDENCE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genretag.fusion import FLOOR, RULES, Fusion, combine, softmax

WEIGHTS = tuple(round(w, 2) for w in np.linspace(0, 1, 21))  # the CNN's share, in steps of 0.05
BINS = 15
TARGET_PRECISION = 0.85
EVEN_ODDS = 0.5  # the lowest default threshold: below it a calibrated call is more likely wrong than right


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true genres."""
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], FLOOR))))


def ece(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of the top genre: sum over confidence bins of |accuracy - confidence| x share."""
    rows = reliability(probs, y, bins)
    return float(sum(r["tracks"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / len(y))


def ece_if_calibrated(probs: np.ndarray, draws: int = 300, seed: int = 0) -> dict[str, float]:
    """The ECE that a perfectly calibrated model with these very confidences would show on this many tracks:
    the truth drawn from ``probs`` itself, ``draws`` times (median and 95th percentile).

    On a few hundred tracks the binned estimate is far from zero even then, so an observed ECE is read
    against this floor: at or below its median, the data cannot tell the model from a calibrated one.
    """
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    sims = [ece(probs, (rng.random((len(probs), 1)) > cumulative).sum(axis=1)) for _ in range(draws)]
    return {"median": round(float(np.median(sims)), 4), "p95": round(float(np.percentile(sims, 95)), 4)}


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Per non-empty confidence bin: its edges, tracks, mean confidence and accuracy."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "tracks": int(np.sum(which == b)),
             "confidence": float(conf[which == b].mean()), "accuracy": float(correct[which == b].mean())}
            for b in range(bins) if np.any(which == b)]


def fit_temperature(logp: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the NLL of ``softmax(logp / T)`` (bounded search over 0.05-20)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: nll(softmax(logp / np.exp(log_t)), y),
                            bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def balanced_accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    predicted = probs.argmax(axis=1)
    return float(np.mean([np.mean(predicted[y == c] == c) for c in np.unique(y)]))


def choose_fusion(cnn: np.ndarray, descriptor: np.ndarray, y: np.ndarray, weights: Sequence[float] = WEIGHTS
                  ) -> tuple[Fusion, list[dict[str, Any]]]:
    """Every rule and weight, each with its own fitted temperature; the one of lowest calibrated NLL wins.

    NLL rather than accuracy decides: it uses every track's whole probability vector, so it is far
    less noisy than the 10-14 tracks of a thin genre that move balanced accuracy. Returns the choice
    and the whole grid (for the report).
    """
    grid = []
    for rule in RULES:
        for w in weights:
            logp = combine(cnn, descriptor, rule, w)
            t = fit_temperature(logp, y)
            probs = softmax(logp / t)
            grid.append({"rule": rule, "weight": w, "temperature": round(t, 4), "nll": round(nll(probs, y), 4),
                         "track_accuracy": round(float(np.mean(probs.argmax(1) == y)), 4),
                         "balanced_track_accuracy": round(balanced_accuracy(probs, y), 4)})
    best = min(grid, key=lambda r: (r["nll"], -r["balanced_track_accuracy"]))
    return Fusion(best["rule"], best["weight"], best["temperature"]), grid


def cross_fitted(logp: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0,
                 fold_of: np.ndarray | None = None) -> np.ndarray:
    """Probabilities with each track's temperature fitted on the other folds' tracks only.

    Measuring ECE on the tracks the temperature was fitted on flatters it; this does not. ``fold_of``
    gives the folds (the CV's own, by artist); else ``folds`` random parts.
    """
    if fold_of is None:
        parts = np.array_split(np.random.default_rng(seed).permutation(len(y)), folds)
    else:
        parts = [np.flatnonzero(fold_of == k) for k in np.unique(fold_of)]
    out = np.zeros_like(logp)
    for part in parts:
        rest = np.setdiff1d(np.arange(len(y)), part)
        out[part] = softmax(logp[part] / fit_temperature(logp[rest], y[rest]))
    return out


def precision_coverage(probs: np.ndarray, y: np.ndarray, thresholds: Sequence[float]) -> list[dict[str, float]]:
    """For each threshold: the share of tracks at or above it (coverage) and how many of those are right."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    rows = []
    for t in thresholds:
        kept = conf >= t
        rows.append({"threshold": round(float(t), 3), "coverage": round(float(kept.mean()), 4),
                     "precision": round(float(correct[kept].mean()), 4) if kept.any() else 1.0,
                     "tracks": int(kept.sum())})
    return rows


def default_threshold(curve: Sequence[dict[str, float]], target: float = TARGET_PRECISION,
                      floor: float = EVEN_ODDS) -> dict[str, float]:
    """The lowest threshold from which on (every higher one too) precision stays at or above ``target``,
    and never below ``floor``.

    The floor keeps "uncertain" meaningful where the held-out curve is optimistic: on GTZAN's
    out-of-fold tracks (artists shared across folds) a strong model keeps 0.85 precision at every
    threshold, yet a call its own calibrated probability rates more likely wrong than right is no
    confident call in a library from elsewhere.
    """
    chosen = curve[-1]
    for row in reversed(curve):
        if row["precision"] < target or row["threshold"] < floor:
            break
        chosen = row
    return chosen


def calibration_report(cnn: np.ndarray, descriptor: np.ndarray, y: np.ndarray, labels: Sequence[str],
                       weights: Sequence[float] = WEIGHTS, fold_of: np.ndarray | None = None) -> dict[str, Any]:
    """Fusion choice, calibration before and after, and the precision-coverage curve, all on out-of-fold tracks.

    ``weights=(1.0,)`` calibrates the CNN alone (the descriptor network's figures are still reported).
    ``fold_of``: the tracks' CV folds, which the cross-fitted figures then keep apart (by artist).
    """
    fusion, grid = choose_fusion(cnn, descriptor, y, weights)
    raw = softmax(combine(cnn, descriptor, fusion.rule, fusion.weight))
    calibrated = fusion(cnn, descriptor)
    honest = cross_fitted(combine(cnn, descriptor, fusion.rule, fusion.weight), y, fold_of=fold_of)
    cnn_alone = Fusion("log", 1.0, fit_temperature(np.log(np.maximum(cnn, FLOOR)), y))
    desc_alone = Fusion("log", 0.0, fit_temperature(np.log(np.maximum(descriptor, FLOOR)), y))

    def summary(probs: np.ndarray) -> dict[str, Any]:
        return {"nll": round(nll(probs, y), 4), "ece": round(ece(probs, y), 4),
                "track_accuracy": round(float(np.mean(probs.argmax(1) == y)), 4),
                "balanced_track_accuracy": round(balanced_accuracy(probs, y), 4),
                "per_genre_recall": {g: round(float(np.mean(probs.argmax(1)[y == i] == i)), 4)
                                     for i, g in enumerate(labels) if np.any(y == i)}}

    curve = precision_coverage(calibrated, y, np.round(np.arange(0.0, 1.0, 0.05), 2))
    return {
        "tracks": len(y),
        "fusion": fusion.to_dict(),
        "grid": grid,
        "cnn": {**summary(cnn), "calibrated": summary(cnn_alone(cnn, None)), "temperature": cnn_alone.temperature},
        "descriptor": {**summary(descriptor), "calibrated": summary(desc_alone(descriptor, None)),
                       "temperature": desc_alone.temperature},
        "fused": {"before": summary(raw), "after": summary(calibrated),
                  "after_cross_fitted": {**summary(honest), "ece_if_calibrated": ece_if_calibrated(honest)}},
        "calibration": {"before": {k: summary(raw)[k] for k in ("nll", "ece")},
                        "after": {k: summary(calibrated)[k] for k in ("nll", "ece")}},
        "reliability": {"before": reliability(raw, y), "after": reliability(calibrated, y)},
        "precision_coverage": curve,
        "threshold": default_threshold(curve),
    }


def reliability_png(report: dict[str, Any], path: Path, tracks_are: str = "out-of-fold tracks") -> Path:
    """Reliability diagram (accuracy against confidence per bin, before and after) beside the precision-coverage curve.

    ``report`` holds ``tracks``, ``calibration`` and ``reliability`` (each ``before`` and ``after``),
    ``precision_coverage`` and the ``threshold`` row to mark.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=100)
    left.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect calibration")
    for key, colour in (("before", "tab:red"), ("after", "tab:blue")):
        rows = report["reliability"][key]
        fused = report["calibration"][key]
        left.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o-", color=colour,
                  label=f"{key} temperature (ECE {fused['ece']:.3f}, NLL {fused['nll']:.3f})")
    left.set(xlabel="confidence (top genre's probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
             title=f"reliability, {tracks_are} (n={report['tracks']})")
    left.legend(fontsize=8, loc="upper left")
    curve = report["precision_coverage"]
    right.plot([r["coverage"] for r in curve], [r["precision"] for r in curve], "o-", color="tab:blue")
    chosen = report["threshold"]
    right.plot([chosen["coverage"]], [chosen["precision"]], "s", color="tab:orange", ms=10,
               label=f"threshold {chosen['threshold']:.2f}: precision {chosen['precision']:.2f}, "
                     f"coverage {chosen['coverage']:.2f}")
    right.axhline(TARGET_PRECISION, color="grey", lw=1, ls="--")
    right.set(xlabel="coverage (share of tracks called confident)", ylabel="precision of those",
              title="precision vs coverage (thresholds 0.00-0.95)", xlim=(0, 1.02), ylim=(0, 1.02))
    right.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
