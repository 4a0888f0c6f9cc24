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


def held_out_votes(tracks: Sequence[TrackFeatures], probabilities: Sequence[np.ndarray], labels: Sequence[str],
                   scheme: str, folds: Sequence[int] | None = None) -> dict[str, Any]:
    """Each track's vote (mean segment probabilities), in the CV report's ``out_of_fold`` form.

    On tracks the model never trained on (a held-out split: one fold; or K-fold CV with each track's
    ``folds`` entry), these are held-out predictions that ``genretag fuse`` can choose a fusion and a
    temperature on (never on the test split: fuse refuses test tracks).
    """
    folds = folds if folds is not None else [1] * len(tracks)
    return {"labels": list(labels), "vote": "mean segment probability, plain segments", "scheme": scheme,
            "tracks": sorted(({"track_id": t.clip.track_id, "genre": t.clip.genre, "fold": int(k),
                               "probabilities": [round(float(v), 6) for v in p.mean(axis=0)]}
                              for t, p, k in zip(tracks, probabilities, folds)), key=lambda r: r["track_id"])}


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


# --- the fused model: CNN, descriptor network and their fusion side by side ---------------------

FUSED_NAME = "evaluation-fused.json"
CALIBRATION_PNG = "calibration-test.png"


def descriptor_rows(tracks: Sequence[TrackFeatures]) -> np.ndarray:
    """Each track's descriptor row (n_tracks, n_columns) from its audio, as inference computes it for a clip."""
    from genretag import audio, descriptors

    return np.stack([descriptors.of_windows(audio.load(t.clip.path, descriptors.SR)[None, :]) for t in tracks])


def fused_report(bundle, describe, tracks: Sequence[TrackFeatures], segment_probs: Sequence[np.ndarray],
                 rows: np.ndarray, min_confidence: float) -> dict[str, Any]:
    """CNN (vote of all segments), descriptor network, and the bundle's calibrated fusion, on the same tracks.

    ``describe`` is the bundle's descriptor predictor, or ``None`` for a bundle without one (the CNN,
    calibrated). Also the fused model's calibration (NLL, ECE, reliability) and its precision-coverage curve,
    with the row at ``min_confidence``.
    """
    from genretag.fusion import combine, softmax
    from genretag.training import calibrate
    from genretag.training.descriptors import figures

    labels = bundle.labels
    index = {g: i for i, g in enumerate(labels)}
    y = np.array([index[t.clip.genre] for t in tracks])
    cnn = np.stack([p.mean(axis=0) for p in segment_probs])
    desc = describe(rows) if describe is not None else None
    fusion = bundle.fusion()
    fused = fusion(cnn, desc)
    raw = cnn if desc is None else softmax(combine(cnn, desc, fusion.rule, fusion.weight))
    curve = calibrate.precision_coverage(fused, y, sorted({*np.round(np.arange(0, 1, 0.05), 2), min_confidence}))
    at_default = next(r for r in curve if r["threshold"] == round(min_confidence, 3))

    def calibration(probs: np.ndarray) -> dict[str, float]:
        return {"nll": round(calibrate.nll(probs, y), 4), "ece": round(calibrate.ece(probs, y), 4)}

    return {
        "tracks": len(tracks),
        "fusion": fusion.to_dict(),
        "cnn": figures(y, cnn, labels),
        **({"descriptor": figures(y, desc, labels)} if desc is not None else {}),
        "fused": figures(y, fused, labels),
        "calibration": {"before": calibration(raw), "after": calibration(fused)},
        "reliability": {"before": calibrate.reliability(raw, y), "after": calibrate.reliability(fused, y)},
        "precision_coverage": curve,
        "threshold": at_default,
        "calls": [{"track": t.clip.track_id, "true": t.clip.genre, "cnn": labels[int(c.argmax())],
                   "fused": labels[int(f.argmax())], "confidence": round(float(f.max()), 4)}
                  for t, c, f in zip(tracks, cnn, fused)],
    }


def fused_table(report: dict[str, Any], table_report: dict[str, Any] | None) -> str:
    """The side-by-side figures as plain text: overall, per genre, calibration and the threshold."""
    lines = []
    if table_report is not None:
        d = table_report
        lines.append(f"descriptor network on the table's {d['tracks']} rows: track accuracy {d['track_accuracy']:.3f}, "
                     f"balanced {d['balanced_track_accuracy']:.3f}, NLL {d['nll']:.3f}")
    models = [m for m in ("cnn", "descriptor", "fused") if m in report]
    names = {"cnn": "CNN", "descriptor": "descr.", "fused": "fused" if "descriptor" in report else "calib."}
    lines.append(f"on {report['tracks']} tracks from audio:   " + " ".join(f"{names[m]:>7}" for m in models))
    for key in ("track_accuracy", "balanced_track_accuracy", "nll"):
        lines.append(f"  {key:<31}" + "".join(f" {report[m][key]:>7.3f}" for m in models))
    lines.append(f"  {'recall per genre':<24} {'tracks':>6}")
    for g, n in report["fused"]["support"].items():
        if n:
            lines.append(f"  {g:<24} {n:>6}" + "".join(f" {report[m]['recall'][g]:>7.3f}" for m in models))
    b, a, t = report["calibration"]["before"], report["calibration"]["after"], report["threshold"]
    lines.append(f"calibration of the track probabilities: NLL {b['nll']:.3f} -> {a['nll']:.3f}, ECE {b['ece']:.3f} -> {a['ece']:.3f}")
    lines.append(f"at min_confidence {t['threshold']:.2f}: precision {t['precision']:.3f}, coverage {t['coverage']:.3f}"
                 f" ({t['tracks']} of {report['tracks']} tracks called confident)")
    return "\n".join(lines)


def table_report(labels: Sequence[str], describe, rows) -> dict[str, Any]:
    """The descriptor network (``describe``: a bundle's descriptor predictor) on descriptor-table rows, per genre."""
    from genretag.training.descriptors import figures

    return {"tracks": len(rows.track_ids), **figures(rows.labels(labels), describe(rows.x), labels)}
