"""The pretrained family: a GTZAN head on musicnn's frozen MSD backbone, cross-validated, calibrated, joined.

The backbone never trains, so its pooled features (mean_pool and max_pool, 1,506 per 3-s patch)
are computed once per clip and cached. The head is a logistic regression on them (standardised,
balanced class weights, multinomial), fitted on every patch of the training tracks and excerpts; a
track averages its patches' probabilities, as the product's vote does. Its regularisation comes
from 5-fold CV by track on train+valid, and a temperature from the out-of-fold track
probabilities. :func:`network` folds the standardisation into the head's Dense layer and joins it
to the backbone: one Keras model from log-mel patch to genre probabilities, exported whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genretag import audio, features
from genretag.bundle import GENRES, Bundle
from genretag.features import MUSICNN
from genretag.fusion import softmax
from genretag.training.calibrate import ece, nll
from genretag.training.datasets import Clip, TrackFeatures
from genretag.training.musicnn import LICENCE, POOLED, WEIGHTS
from genretag.training.train import VERSION_PREFIX

log = logging.getLogger(__name__)

C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)  # the head's inverse L2 strength, tried by `train --folds`
HEAD_C = 3e-3  # the best of C_GRID on 5-fold CV by artist (docs/evaluation.md section 00; by track: 3e-2)
CACHE_VERSION = 1


@dataclass(frozen=True)
class Head:
    """A fitted logistic regression on standardised pooled features: logits = ((x - mean) / std) @ coef.T + bias."""

    mean: np.ndarray  # (1506,)
    std: np.ndarray  # (1506,)
    coef: np.ndarray  # (n_labels, 1506)
    bias: np.ndarray  # (n_labels,)
    C: float

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        return ((pooled - self.mean) / self.std) @ self.coef.T + self.bias

    def probabilities(self, pooled: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return softmax(self.logits(pooled) / temperature)


# --- frozen backbone features, cached ------------------------------------------------------------


def backbone_features(clips: Iterable[Clip], cache_dir: Path, backbone: Any | None = None) -> list[TrackFeatures]:
    """Pooled backbone features (n_patches, 1506) of each clip's loud segments; silent or unreadable clips skipped.

    Cached as ``.npz`` keyed by the file (path, size, mtime), the feature parameters and the weights file.
    """
    from genretag.training.musicnn import load_backbone, pooled_features

    weights_id = hashlib.sha1(WEIGHTS.read_bytes()).hexdigest()[:12]
    out = []
    for clip in clips:
        try:
            st = audio.check_readable(clip.path)
            key = json.dumps([CACHE_VERSION, os.fspath(Path(clip.path).resolve()), st.st_size, st.st_mtime_ns,
                              MUSICNN.to_dict(), weights_id])
            cached = Path(cache_dir) / "musicnn" / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"
            if cached.is_file():
                pooled = np.load(cached)
            else:
                backbone = backbone or load_backbone()
                maps = features.extract(audio.load(clip.path, MUSICNN.sr), MUSICNN)
                pooled = pooled_features(backbone, maps)
                cached.parent.mkdir(parents=True, exist_ok=True)
                partial = cached.with_name(cached.stem + ".partial.npy")
                np.save(partial, pooled)
                os.replace(partial, cached)
        except audio.AudioError as exc:
            log.warning("skipping %s: %s", clip.path, exc.reason)
            continue
        if len(pooled) == 0:
            log.warning("skipping %s: no loud segment", clip.path)
            continue
        out.append(TrackFeatures(clip, pooled, np.zeros((0, POOLED), np.float32)))
    return out


# --- the head --------------------------------------------------------------------------------------


def fit_head(train: Sequence[TrackFeatures], C: float, labels: Sequence[str] = GENRES) -> Head:
    """Logistic regression on every patch of ``train`` (tracks and excerpts), classes weighted to balance."""
    from sklearn.linear_model import LogisticRegression

    index = {g: i for i, g in enumerate(labels)}
    x = np.concatenate([t.maps for t in train]).astype(np.float64)
    y = np.concatenate([np.full(len(t.maps), index[t.clip.genre]) for t in train])
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000)
    model.fit((x - mean) / std, y)
    coef = np.zeros((len(labels), x.shape[1]))
    bias = np.full(len(labels), -1e4)  # a genre with no training patch is never predicted
    coef[model.classes_], bias[model.classes_] = model.coef_, model.intercept_
    return Head(mean, std, coef, bias, C)


def voted(logits: Sequence[np.ndarray], temperature: float = 1.0) -> np.ndarray:
    """Each track's vote (n_tracks, n_labels): the mean of its patches' probabilities at ``temperature``."""
    return np.stack([softmax(z / temperature).mean(axis=0) for z in logits])


def fit_temperature(logits: Sequence[np.ndarray], truth: np.ndarray) -> float:
    """The temperature of the patch logits that minimises the NLL of the tracks' votes.

    It scales the head's logits inside the network, so every patch probability, and with them the
    vote's mean, comes out calibrated; the runtime needs no step of its own.
    """
    from scipy.optimize import minimize_scalar

    best = minimize_scalar(lambda log_t: nll(voted(logits, float(np.exp(log_t))), truth), bounds=(-3, 3),
                           method="bounded")
    return float(np.exp(best.x))


# --- choosing on CV by track, never on test ----------------------------------------------------------


def final_training_set(dataset, tracks: Sequence[TrackFeatures], excerpts: Sequence[TrackFeatures]):
    """What the shipped head trains on, as ``train --no-early-stopping`` does: the train and valid tracks and,
    with the fault-filtered lists, only the excerpts they put there (a clip they leave out may repeat a test clip)."""
    from genretag.training.splits import by_side, dataset_sides

    sides, _ = dataset_sides(dataset)
    sides = {t: "train" if s == "valid" else s for t, s in sides.items()}
    usable = [e for e in excerpts if dataset.splits_dir is None or e.clip.track_id in sides]
    return by_side(tracks, usable, sides)["train"]


def cross_validate(plan, C: float, folds: int = 5, seed: int = 0, labels: Sequence[str] = GENRES
                   ) -> tuple[list[dict[str, Any]], list[np.ndarray], list[int]]:
    """K-fold CV of ``plan`` (:func:`genretag.training.splits.cv_plan`): each fold's track metrics, every pool
    track's out-of-fold patch logits and its fold (1..K).

    The held-out tracks never train, nor (folds by artist) the excerpts of their blocks.
    """
    from genretag.training.evaluate import track_metrics
    from genretag.training.splits import fold_excerpts

    pool = plan.pool
    oof: list[np.ndarray] = [np.zeros(0)] * len(pool)
    fold_of = [0] * len(pool)
    results = []
    for k, fold in enumerate(plan.folds(folds, seed), 1):
        held = [i for i, t in enumerate(pool) if fold[t.clip.track_id] == "valid"]
        head = fit_head([t for t in pool if fold[t.clip.track_id] == "train"] + fold_excerpts(plan.excerpts, fold),
                        C, labels)
        logits = [head.logits(pool[i].maps) for i in held]
        for i, z in zip(held, logits):
            oof[i], fold_of[i] = z, k
        results.append(track_metrics([pool[i] for i in held], [softmax(z) for z in logits], labels))
    return results, oof, fold_of


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over folds of the track figures, with per-genre recall where a fold holds the genre."""
    def stat(values: Sequence[float]) -> dict[str, float]:
        return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}

    return {
        "balanced_track_accuracy": stat([r["balanced_track_accuracy"] for r in results]),
        "track_accuracy": stat([r["track_accuracy"] for r in results]),
        "segment_accuracy": stat([r["segment_accuracy"] for r in results]),
        "per_genre_recall": {g: stat([r["per_genre"][g]["recall"] for r in results if r["per_genre"][g]["support"]])
                             for g in results[0]["per_genre"]},
        "per_fold_balanced": [r["balanced_track_accuracy"] for r in results],
    }


def cross_validate_grid(dataset, tracks: Sequence[TrackFeatures], excerpts: Sequence[TrackFeatures], folds: int = 5,
                        grid: Sequence[float] = C_GRID, echo=print, labels: Sequence[str] = GENRES,
                        folds_by: str = "artist") -> dict[str, Any]:
    """K-fold CV of the head at each C of ``grid`` (``train --folds``); the report names the best."""
    from genretag.training.splits import cv_plan

    plan = cv_plan(dataset, tracks, excerpts, folds, folds_by)
    by_c = {}
    for C in grid:
        by_c[C] = summarise(cross_validate(plan, C, folds, labels=labels)[0])
        bal, acc = by_c[C]["balanced_track_accuracy"], by_c[C]["track_accuracy"]
        echo(f"C {C:g}: {folds}-fold CV balanced track accuracy {bal['mean']:.3f} +- {bal['std']:.3f}, "
             f"track accuracy {acc['mean']:.3f} +- {acc['std']:.3f}")
    best = max(grid, key=lambda c: by_c[c]["balanced_track_accuracy"]["mean"])
    return {"split": plan.split, "folds_by": plan.folds_by, "folds": folds, "tracks": len(plan.pool),
            "excerpts": len(plan.excerpts), "best_C": best, "by_C": {f"{c:g}": by_c[c] for c in grid}}


@dataclass
class Trained:
    """A calibrated, fitted head joined to the backbone, with the figures behind it."""

    model: Any  # keras.Model: log-mel patch -> calibrated genre probabilities
    head: Head
    temperature: float
    cv: dict[str, Any]  # the CV at C, the calibration on its out-of-fold tracks, their votes
    data: dict[str, Any]


def cross_fitted_votes(logits: Sequence[np.ndarray], truth: np.ndarray, fold_of: Sequence[int]) -> np.ndarray:
    """Each track's vote at the temperature fitted on the other folds' tracks only: the honest one to
    score calibration on (the temperature fitted on all of them flatters its own tracks)."""
    folds = np.asarray(fold_of)
    out = np.zeros((len(logits), len(logits[0][0]) if len(logits) else 0))
    for k in np.unique(folds):
        rest = np.flatnonzero(folds != k)
        temperature = fit_temperature([logits[i] for i in rest], truth[rest])
        for i in np.flatnonzero(folds == k):
            out[i] = softmax(logits[i] / temperature).mean(axis=0)
    return out


def train(dataset, tracks: Sequence[TrackFeatures], excerpts: Sequence[TrackFeatures], C: float = HEAD_C,
          folds: int = 5, echo=print, labels: Sequence[str] = GENRES, folds_by: str = "artist") -> Trained:
    """Fit the temperature on K-fold CV's out-of-fold tracks at ``C``, then the head on train+valid (never test),
    and join it to the backbone."""
    from genretag.training.evaluate import held_out_votes
    from genretag.training.splits import cv_plan, dataset_sides
    from genretag.training.train import data_summary

    plan = cv_plan(dataset, tracks, excerpts, folds, folds_by)
    truth = np.array([labels.index(t.clip.genre) for t in plan.pool])
    results, oof, fold_of = cross_validate(plan, C, folds, labels=labels)
    temperature = fit_temperature(oof, truth)
    raw, calibrated, honest = voted(oof), voted(oof, temperature), cross_fitted_votes(oof, truth, fold_of)
    calibration = {
        "method": "temperature", "temperature": round(temperature, 4),
        "fitted_on": f"{len(plan.pool)} out-of-fold tracks ({plan.folds_by} folds)",
        "applied": "to the head's logits, inside the network",
        "nll": {"before": round(nll(raw, truth), 4), "after": round(nll(calibrated, truth), 4),
                "after_cross_fitted": round(nll(honest, truth), 4)},
        "ece": {"before": round(ece(raw, truth), 4), "after": round(ece(calibrated, truth), 4),
                "after_cross_fitted": round(ece(honest, truth), 4)},
    }
    summary = summarise(results)
    echo(f"C {C:g}: {folds}-fold CV ({plan.folds_by}) balanced track accuracy "
         f"{summary['balanced_track_accuracy']['mean']:.3f}; temperature {temperature:.3f}: out-of-fold NLL "
         f"{calibration['nll']['before']:.3f} -> {calibration['nll']['after']:.3f}, ECE {calibration['ece']['before']:.3f} "
         f"-> {calibration['ece']['after']:.3f} (cross-fitted {calibration['ece']['after_cross_fitted']:.3f})")
    train_set = final_training_set(dataset, tracks, excerpts)
    head = fit_head(train_set, C, labels)
    cv = {"split": plan.split, "folds_by": plan.folds_by, "C": C, **summary, "calibration": calibration,
          "out_of_fold": held_out_votes(plan.pool, [softmax(z / temperature) for z in oof], labels,
                                        f"{folds}-fold CV, {plan.folds_by} folds", fold_of)}
    return Trained(network(head, temperature), head, temperature, cv,
                   {"train": data_summary(train_set), "split": dataset_sides(dataset)[1]})


def bundle_of(trained: Trained, labels: Sequence[str] = GENRES) -> Bundle:
    """The format-2 bundle's description of ``trained`` (export.save adds the network), musicnn's licence inside."""
    digest = hashlib.sha1(WEIGHTS.read_bytes())
    for part in (trained.head.mean, trained.head.std, trained.head.coef, trained.head.bias, [trained.temperature]):
        digest.update(np.ascontiguousarray(part, np.float64).tobytes())
    return Bundle(
        architecture="musicnn",
        version=f"{VERSION_PREFIX}-musicnn-{digest.hexdigest()[:7]}",
        labels=tuple(labels),
        features=MUSICNN,
        mean=np.zeros(MUSICNN.n_mels, np.float32),  # the backbone normalises its input itself
        std=np.ones(MUSICNN.n_mels, np.float32),
        training={"backbone": "musicnn 0.1.0 MSD_musicnn, frozen (ISC licence: LICENSE.musicnn.txt)",
                  "head": {"kind": "logistic regression on mean_pool + max_pool", "C": trained.head.C,
                           "class_weight": "balanced"},
                  "calibration": trained.cv["calibration"], "data": trained.data,
                  "cv": {k: v for k, v in trained.cv.items() if k != "out_of_fold"}},
        files={LICENCE.name: LICENCE.read_bytes()},
    )


def network(head: Head, temperature: float = 1.0) -> Any:
    """One Keras model, log-mel patch to genre probabilities: the ported backbone, then the head.

    ``softmax((((x - mean) / std) @ coef.T + bias) / T)``: the standardisation is a layer of its own
    (subtracting first keeps float32 exact where a feature barely varies), the temperature divides
    the Dense layer's weights.
    """
    from genretag.training.musicnn import build_classifier

    model = build_classifier(n_classes=len(head.bias))
    model.get_layer("musicnn_msd").load_weights(WEIGHTS)
    standardise = model.get_layer("standardise")
    standardise.set_weights([head.mean.astype(np.float32), np.square(head.std).astype(np.float32),
                             *standardise.get_weights()[2:]])
    standardise.finalize_state()  # Keras reads mean and variance into the graph here (loading weights does it too)
    model.get_layer("genre").set_weights([(head.coef.T / temperature).astype(np.float32),
                                          (head.bias / temperature).astype(np.float32)])
    return model
