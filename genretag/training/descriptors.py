"""The descriptor network (architecture ``dense``): track descriptors to genre, trained on GTZAN's table.

The table is ``features_30_sec.csv`` (the Kaggle edition's per-clip descriptors, all 1,000 clips;
``../shared/gtzan/features``), so every genre trains on its 100 clips, where the audio has 14-16 of
seven genres. Rows follow the clips' sides in the fault-filtered lists; test rows never train nor
choose. Standardisation (mean and std per column) comes from the training rows and is stored with
the network. A small random search with cross-validation by track picks layer sizes, dropout, L2
and learning rate.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genretag.bundle import DESCRIPTOR_TFLITE, GENRES
from genretag.training.networks import build_dense

TABLE_NAME = "features_30_sec.csv"
NOT_FEATURES = ("filename", "length", "label")


class TableError(Exception):
    """No descriptor table, or one this code cannot read."""


@dataclass(frozen=True)
class DescriptorTable:
    """Rows of the descriptor table: clip name (``blues.00012``), genre, values (n, n_columns)."""

    track_ids: tuple[str, ...]
    genres: tuple[str, ...]
    x: np.ndarray
    columns: tuple[str, ...]

    def rows(self, ids: Sequence[str]) -> DescriptorTable:
        """The rows of ``ids``, in that order."""
        where = {t: i for i, t in enumerate(self.track_ids)}
        idx = [where[t] for t in ids]
        return DescriptorTable(tuple(ids), tuple(self.genres[i] for i in idx), self.x[idx], self.columns)

    def labels(self, labels: Sequence[str] = GENRES) -> np.ndarray:
        index = {g: i for i, g in enumerate(labels)}
        return np.array([index[g] for g in self.genres], np.int64)


def find_table(data: Path) -> Path:
    """The descriptor table beside a GTZAN folder, in this project's layout or Kaggle's."""
    data = Path(data)
    for candidate in (data / "features" / TABLE_NAME, data / "Data" / TABLE_NAME, data / TABLE_NAME,
                      data.parent / "features" / TABLE_NAME):
        if candidate.is_file():
            return candidate
    raise TableError(f"{data}: no {TABLE_NAME} (looked in features/, Data/ and the folder itself)")


def read_table(path: Path, columns: Sequence[str] | None = None) -> DescriptorTable:
    """Read the table; ``columns`` picks and orders the feature columns (default: all but name, length, label)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        wanted = tuple(columns) if columns is not None else tuple(c for c in header if c not in NOT_FEATURES)
        missing = [c for c in (*wanted, "filename", "label") if c not in header]
        if missing:
            raise TableError(f"{path}: missing columns {missing}")
        ids, genres, values = [], [], []
        for row in reader:
            ids.append(row["filename"].rsplit(".", 1)[0])  # blues.00012.au -> blues.00012
            genres.append(row["label"])
            values.append([float(row[c]) for c in wanted])
    return DescriptorTable(tuple(ids), tuple(genres), np.asarray(values, np.float64), wanted)


@dataclass(frozen=True)
class DenseConfig:
    """One descriptor network and its training; the random search draws these."""

    layers: tuple[int, ...] = (512, 256, 128, 64)  # the seed's dense NN
    dropout: float = 0.2
    l2: float = 1e-4
    learning_rate: float = 1e-3
    epochs: int = 100
    batch_size: int = 64
    seed: int = 0

    def replace(self, **overrides: Any) -> DenseConfig:
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "layers": list(self.layers)}


@dataclass
class TrainedDescriptor:
    """A trained descriptor network with the standardisation of its inputs (from its training rows)."""

    model: Any  # keras.Model, architecture ``dense``
    config: DenseConfig
    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    rows: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Descriptor rows (n, n_columns) to probabilities (n, n_labels), in Keras."""
        return np.asarray(self.model(((x - self.mean) / self.std).astype(np.float32), training=False))

    def section(self, rule: str, weight: float) -> dict[str, Any]:
        """The bundle's ``descriptor`` entry of meta.json for this network fused by ``rule`` at CNN ``weight``."""
        from genretag import descriptors

        if tuple(descriptors.COLUMNS) != self.columns:
            raise ValueError("the table's columns are not the ones genretag.descriptors computes")
        return {"architecture": "dense", "layers": list(self.config.layers), **descriptors.expected(),
                "normalisation": {"mean": self.mean.tolist(), "std": self.std.tolist()}, "file": DESCRIPTOR_TFLITE,
                "fusion": {"rule": rule, "weight": weight},
                "training": {"settings": self.config.to_dict(), "rows": self.rows}}


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), x.std(axis=0) + 1e-9


def fit_dense(table: DescriptorTable, config: DenseConfig, labels: Sequence[str] = GENRES) -> TrainedDescriptor:
    """Train on every row of ``table`` for ``config.epochs`` with class weights (the lists are uneven)."""
    from tensorflow import keras

    from genretag.training.train import class_weights

    keras.utils.set_random_seed(config.seed)
    mean, std = standardisation(table.x)
    y = table.labels(labels)
    weights = class_weights(y, len(labels))
    model = build_dense(table.x.shape[1], len(labels), config.layers, config.dropout, config.l2)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="categorical_crossentropy")
    model.fit(((table.x - mean) / std).astype(np.float32), np.eye(len(labels), dtype=np.float32)[y],
              sample_weight=weights[y], epochs=config.epochs, batch_size=config.batch_size, verbose=0)
    trained = build_dense(table.x.shape[1], len(labels), config.layers)  # without the optimizer's state
    trained.set_weights(model.get_weights())
    return TrainedDescriptor(trained, config, table.columns, mean, std, len(table.track_ids))


def cross_validate_dense(
    table: DescriptorTable, config: DenseConfig, folds: int, seed: int = 0, labels: Sequence[str] = GENRES,
    blocks: dict[str, str] | None = None,
) -> dict[str, Any]:
    """K-fold CV stratified by genre, by track or (``blocks``) holding whole artist blocks out: per-fold
    figures and every row's out-of-fold probabilities."""
    from genretag.training.splits import kfold_sides

    oof = np.zeros((len(table.track_ids), len(labels)))
    per_fold = []
    for k, sides in enumerate(kfold_sides(table.track_ids, table.genres, folds, seed, blocks), 1):
        train_ids = [t for t in table.track_ids if sides[t] == "train"]
        held_ids = [t for t in table.track_ids if sides[t] == "valid"]
        net = fit_dense(table.rows(train_ids), config.replace(seed=config.seed + k), labels)
        held = table.rows(held_ids)
        probs = net.predict(held.x)
        where = {t: i for i, t in enumerate(table.track_ids)}
        oof[[where[t] for t in held_ids]] = probs
        per_fold.append(figures(held.labels(labels), probs, labels))
    return {
        "config": config.to_dict(),
        "folds": folds,
        "folds_by": "track" if blocks is None else "artist",
        **{key: stat([f[key] for f in per_fold]) for key in ("track_accuracy", "balanced_track_accuracy", "nll")},
        "per_genre_recall": {g: stat([f["recall"][g] for f in per_fold if f["support"][g]]) for g in labels},
        "per_fold": per_fold,
        "oof": {t: [round(float(p), 6) for p in row] for t, row in zip(table.track_ids, oof)},
    }


def figures(y: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Track accuracy, balanced accuracy (mean recall over genres present), NLL, per-genre recall."""
    predicted = probs.argmax(axis=1)
    support = {g: int(np.sum(y == i)) for i, g in enumerate(labels)}
    recall = {g: float(np.mean(predicted[y == i] == i)) if support[g] else 0.0 for i, g in enumerate(labels)}
    present = [recall[g] for g in labels if support[g]]
    nll = float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12))))
    return {"track_accuracy": round(float(np.mean(predicted == y)), 4),
            "balanced_track_accuracy": round(float(np.mean(present)), 4), "nll": round(nll, 4),
            "recall": {g: round(r, 4) for g, r in recall.items()}, "support": support}


def stat(values: Sequence[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}


SEARCH_SPACE = {
    "layers": [(512, 256, 128, 64), (256, 128, 64), (512, 256), (256, 128), (128, 64), (256,), (1024, 512)],
    "dropout": (0.0, 0.6),  # uniform
    "l2": (1e-6, 1e-2),  # log-uniform
    "learning_rate": (1e-4, 3e-3),  # log-uniform
    "epochs": [30, 60, 100],
}


def draw(rng: np.random.Generator, base: DenseConfig) -> DenseConfig:
    """One random point of :data:`SEARCH_SPACE`."""
    def log_uniform(lo: float, hi: float) -> float:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    def choice(name: str) -> Any:
        return SEARCH_SPACE[name][int(rng.integers(len(SEARCH_SPACE[name])))]

    return base.replace(layers=tuple(choice("layers")), epochs=int(choice("epochs")), dropout=round(float(rng.uniform(*SEARCH_SPACE["dropout"])), 2),
                        l2=float(f"{log_uniform(*SEARCH_SPACE['l2']):.1e}"),
                        learning_rate=float(f"{log_uniform(*SEARCH_SPACE['learning_rate']):.1e}"))


def search(
    table: DescriptorTable, trials: int, folds: int, seed: int = 0, base: DenseConfig = DenseConfig(), echo=print,
    progress=lambda summary: None, blocks: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Random search: the seed's settings first, then ``trials - 1`` random draws, each cross-validated.

    Trials are ranked by mean CV NLL (lowest first): fusion and calibration use the network's whole
    probability vector, and NLL, a proper score over every track, is far less noisy than the handful of
    tracks that move balanced accuracy. The same folds serve every trial. ``progress`` gets the summary
    so far after each trial (to keep it on disk).
    """
    rng = np.random.default_rng(seed)
    candidates = [base] + [draw(rng, base) for _ in range(trials - 1)]
    results: list[dict[str, Any]] = []
    for i, config in enumerate(candidates, 1):
        started = time.monotonic()
        r = cross_validate_dense(table, config, folds, seed, blocks=blocks)
        r["seconds"] = round(time.monotonic() - started, 1)
        echo(f"trial {i}/{len(candidates)}: {config.to_dict()} -> balanced {r['balanced_track_accuracy']['mean']:.3f}"
             f" +- {r['balanced_track_accuracy']['std']:.3f}, nll {r['nll']['mean']:.3f} ({r['seconds']} s)")
        results.append(r)
        order = sorted(range(len(results)), key=lambda j: (results[j]["nll"]["mean"],
                                                           -results[j]["balanced_track_accuracy"]["mean"]))
        summary = {"rows": len(table.track_ids), "columns": list(table.columns), "folds": folds, "seed": seed,
                   "folds_by": "track" if blocks is None else "artist",
                   "best": order[0], "ranking": order, "trials": results}
        progress(summary)
    return summary


def split_tables(data: Path, splits_dir: Path | None) -> tuple[DescriptorTable, DescriptorTable, dict[str, str], str]:
    """The table's train+valid rows (training and model choice), its test rows (final report only), the sides.

    Sides (clip name to train/valid/test) come from the fault-filtered lists, as for the audio; rows
    on no list are left out.
    """
    from genretag import descriptors
    from genretag.training.splits import read_split_lists

    table = read_table(find_table(data), descriptors.COLUMNS)
    splits_dir = splits_dir or next((d for d in (Path(data) / "splits", Path(data).parent / "splits")
                                     if (d / "test_filtered.txt").is_file()), None)
    if splits_dir is None:
        raise TableError(f"{data}: no splits/ folder with the fault-filtered lists")
    sides = read_split_lists(splits_dir)
    fit_ids = [t for t in table.track_ids if sides.get(t) in ("train", "valid")]
    test_ids = [t for t in table.track_ids if sides.get(t) == "test"]
    return table.rows(fit_ids), table.rows(test_ids), sides, f"fault-filtered lists in {splits_dir}"
