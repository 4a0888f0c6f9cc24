"""Evaluate a bundle on GTZAN tracks: segment and track accuracy, per-genre figures, confusion matrix.

A track's genre is decided from all its segments by :func:`genretag.classify.vote`, the same rule
inference uses (the highest mean segment probability); the plain majority of segment argmaxes is
reported beside it. Excerpts are never evaluated: a 3-second piece is no track.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genretag.classify import vote
from genretag.training.datasets import TrackFeatures

REPORT_NAME = "evaluation.json"
CONFUSION_NAME = "confusion.png"


def predict_tracks(
    predict: Callable[[np.ndarray], np.ndarray], tracks: Sequence[TrackFeatures], shifted: bool = False
) -> list[np.ndarray]:
    """Segment probabilities (n_segments, n_labels) of each track, in one call of ``predict``.

    ``predict`` is a bundle's LiteRT predictor (``genretag evaluate``: the figures are those of what
    ships) or a Keras one (cross-validation folds). With ``shifted``, the half-segment-shifted
    segments vote too (twice the votes, overlapping).
    """
    if not tracks:
        return []
    views = [t.views(shifted) for t in tracks]
    probs = predict(np.concatenate(views))
    bounds = np.cumsum([0] + [len(v) for v in views])
    return [probs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def track_metrics(
    tracks: Sequence[TrackFeatures], probabilities: Sequence[np.ndarray], labels: Sequence[str]
) -> dict[str, Any]:
    """Figures for tracks whose segment probabilities are given; genres absent from ``tracks`` get support 0."""
    index = {g: i for i, g in enumerate(labels)}
    n = len(labels)
    truth = np.array([index[t.clip.genre] for t in tracks])
    predicted = np.array([index[vote(p, labels)[0]] for p in probabilities])
    majority = np.array([majority_vote(p) for p in probabilities])
    seg_truth = np.concatenate([np.full(len(p), index[t.clip.genre]) for t, p in zip(tracks, probabilities)])
    seg_pred = np.concatenate([p.argmax(axis=1) for p in probabilities])
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    per_genre = {}
    for i, genre in enumerate(labels):
        support = int(confusion[i].sum())
        tp = int(confusion[i, i])
        called = int(confusion[:, i].sum())
        precision = tp / called if called else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_genre[genre] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                            "support": support}
    present = np.flatnonzero(confusion.sum(axis=1))
    recalls = confusion[present, present] / confusion[present].sum(axis=1)
    return {
        "tracks": len(tracks),
        "segments": int(len(seg_truth)),
        "segment_accuracy": round(float(np.mean(seg_truth == seg_pred)), 4),
        "track_accuracy": round(float(np.mean(truth == predicted)), 4),
        "balanced_track_accuracy": round(float(recalls.mean()), 4),
        "track_accuracy_majority_vote": round(float(np.mean(truth == majority)), 4),
        "per_genre": per_genre,
        "labels": list(labels),
        "confusion": confusion.tolist(),
        "errors": [
            {"track": t.clip.track_id, "true": t.clip.genre, "predicted": labels[p]}
            for t, p, y in zip(tracks, predicted, truth) if p != y
        ],
    }


def majority_vote(probabilities: np.ndarray) -> int:
    """Index of the genre most segments pick; a tie goes to the higher mean probability."""
    counts = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
    tied = np.flatnonzero(counts == counts.max())
    return int(tied[np.argmax(probabilities.mean(axis=0)[tied])])


def confusion_png(metrics: dict[str, Any], path: Path, title: str) -> Path:
    """Draw the track-level confusion matrix (rows: true genre, columns: predicted) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = metrics["labels"]
    matrix = np.asarray(metrics["confusion"])
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted genre")
    ax.set_ylabel("true genre")
    ax.set_title(title, fontsize=10)
    top = matrix.max() or 1
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > top / 2 else "black", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def table(metrics: dict[str, Any]) -> str:
    """The figures as a readable plain-text table."""
    lines = [
        f"tracks {metrics['tracks']}, segments {metrics['segments']}",
        f"segment accuracy        {metrics['segment_accuracy']:.3f}",
        f"track accuracy (vote)   {metrics['track_accuracy']:.3f}",
        f"  by majority of argmax {metrics['track_accuracy_majority_vote']:.3f}",
        f"balanced track accuracy {metrics['balanced_track_accuracy']:.3f}",
        "",
        f"{'genre':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'tracks':>7}",
    ]
    for genre, m in metrics["per_genre"].items():
        lines.append(f"{genre:<10} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} {m['support']:>7d}")
    return "\n".join(lines)


def select_tracks(tracks: Sequence[TrackFeatures], sides: dict[str, str], split: str) -> list[TrackFeatures]:
    """Full tracks on ``split`` ("test", "valid", or "all" for every track)."""
    full = [t for t in tracks if not t.clip.excerpt]
    if split == "all":
        return full
    return [t for t in full if sides.get(t.clip.track_id) == split]


def write_report(metrics: dict[str, Any], out_dir: Path, title: str) -> tuple[Path, Path]:
    """``evaluation.json`` and ``confusion.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / REPORT_NAME
    report.write_text(json.dumps(metrics, indent=2) + "\n")
    return report, confusion_png(metrics, out_dir / CONFUSION_NAME, title)
