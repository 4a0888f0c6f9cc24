"""Train on a library's own genre tags: plain (path, label, group) rows in, a bundle with those labels out.

The rows come from the database layer (:func:`genretag.db.queries.library_labels`); nothing here
opens a database session or writes to one. Audio comes from disk through the feature cache that
GTZAN training uses. The validation part is whole groups (artists, else albums), chosen per label
so every label keeps training tracks: no artist sits on both sides, and the figures printed are
measured on artists the model never heard.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from genretag.training.datasets import Clip, TrackFeatures, load_features
from genretag.training.train import TrainConfig, TrainResult, fit


class LabelledTrack(Protocol):
    path: str
    label: str
    group: str


class LibraryTrainingError(ValueError):
    """The library's tags cannot train a model (too few labels or groups)."""


def group_sides(rows: Sequence[LabelledTrack], valid_fraction: float, seed: int) -> dict[str, str]:
    """Path to ``"train"`` or ``"valid"``, whole groups at a time.

    Groups are drawn in a seeded order; a group goes to validation while each label it holds is
    still under ``valid_fraction`` of its tracks there and keeps at least one other group training.
    """
    by_group: dict[str, list[LabelledTrack]] = {}
    for row in rows:
        by_group.setdefault(row.group, []).append(row)
    total = Counter(r.label for r in rows)
    groups_of_label: dict[str, set[str]] = {}
    for row in rows:
        groups_of_label.setdefault(row.label, set()).add(row.group)
    valid: Counter[str] = Counter()
    valid_groups: Counter[str] = Counter()
    sides: dict[str, str] = {}
    order = sorted(by_group)
    np.random.default_rng(seed).shuffle(order)
    for group in order:
        members = by_group[group]
        counts = Counter(r.label for r in members)
        fits = all(valid[label] + n <= valid_fraction * total[label] + 1e-9
                   and valid_groups[label] + 1 < len(groups_of_label[label]) for label, n in counts.items())
        side = "valid" if valid_fraction > 0 and fits else "train"
        if side == "valid":
            valid.update(counts)
            valid_groups.update(counts.keys())
        for row in members:
            sides[row.path] = side
    return sides


def library_clips(rows: Sequence[LabelledTrack]) -> list[Clip]:
    """Each row as a clip of its label, named by its path (the key :func:`group_sides` gives sides by)."""
    return [Clip(row.path, row.label, Path(row.path)) for row in rows]


def load_library(rows: Sequence[LabelledTrack], cache_dir: Path | None) -> list[TrackFeatures]:
    """The MFCC maps of each row's file (cached); unreadable or silent files are skipped with a warning."""
    return load_features(library_clips(rows), cache_dir)


@dataclass
class LibraryTraining:
    result: TrainResult
    labels: tuple[str, ...]
    validation: dict[str, Any] | None  # track figures on the held-out groups (evaluate.track_metrics)
    sides: dict[str, int]  # tracks per side


def train_library(
    rows: Sequence[LabelledTrack], tracks: Sequence[TrackFeatures], config: TrainConfig, valid_fraction: float = 0.2,
    verbose: int = 1,
) -> LibraryTraining:
    """Fit on the training groups (stopping early on the held-out ones when the recipe does), then measure them.

    The bundle's labels are the rows' labels, sorted; its version is new like any trained model's.
    """
    from genretag.training.evaluate import predict_tracks, track_metrics
    from genretag.training.networks import KerasPredictor

    labels = tuple(sorted({t.clip.genre for t in tracks}))
    if len(labels) < 2:
        raise LibraryTrainingError(f"need at least two labels with readable tracks, found {list(labels)}")
    sides = group_sides(rows, valid_fraction, config.seed)
    train = [t for t in tracks if sides.get(t.clip.track_id) == "train"]
    valid = [t for t in tracks if sides.get(t.clip.track_id) == "valid"]
    missing = sorted(set(labels) - {t.clip.genre for t in train})
    if missing:
        raise LibraryTrainingError(f"no training tracks left for {missing}")
    result = fit(train, valid if config.early_stopping else [], config, verbose, labels=labels)
    validation = (track_metrics(valid, predict_tracks(KerasPredictor(result.model, result.bundle), valid), labels)
                  if valid else None)
    result.bundle.training["data"].update({
        "source": "library tags",
        "split": f"by artist (else album), {valid_fraction:.0%} of each label's tracks held out as whole groups",
        "groups": {"train": len({r.group for r in rows if sides[r.path] == "train"}),
                   "valid": len({r.group for r in rows if sides[r.path] == "valid"})},
    })
    if validation:
        result.bundle.metrics["library_validation"] = {k: v for k, v in validation.items() if k != "errors"}
    return LibraryTraining(result, labels, validation, {"train": len(train), "valid": len(valid)})
