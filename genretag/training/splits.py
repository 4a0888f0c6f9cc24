"""Splits by track, never by segment: every segment of a clip lands on the side of its clip.

Sides come from the fault-filtered lists (``splits/{train,valid,test}_filtered.txt``, entries like
``blues/blues.00012.wav``, matched by clip name) when present, otherwise from a split stratified by
genre. Cross-validation folds are stratified by genre too. Excerpts follow their clip's side by
name; they only ever train, so an excerpt whose clip sits on an evaluation side is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genretag.training.datasets import Dataset, TrackFeatures

SIDES = ("train", "valid", "test")


def read_split_lists(splits_dir: Path) -> dict[str, str]:
    """Clip name (``blues.00012``) to side, from the fault-filtered lists in ``splits_dir``."""
    sides: dict[str, str] = {}
    for side in SIDES:
        path = Path(splits_dir) / f"{side}_filtered.txt"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                sides[Path(line.strip()).stem] = side
    return sides


def stratified_sides(
    track_ids: Sequence[str], genres: Sequence[str], fractions: dict[str, float], seed: int
) -> dict[str, str]:
    """Clip name to side, each genre shared out in ``fractions`` (e.g. valid 0.2, test 0.2; the rest trains).

    Every genre with at least two tracks keeps one for training and gives each side at least one
    track when its fraction is positive, so thin genres appear everywhere.
    """
    rng = np.random.default_rng(seed)
    sides: dict[str, str] = {}
    for genre in sorted(set(genres)):
        ids = sorted(t for t, g in zip(track_ids, genres) if g == genre)
        rng.shuffle(ids)
        start = 0
        for side, fraction in fractions.items():
            if fraction <= 0:
                continue
            n = max(1 if len(ids) - start >= 2 else 0, int(round(fraction * len(ids))))
            n = min(n, len(ids) - start - 1)
            for t in ids[start: start + n]:
                sides[t] = side
            start += max(n, 0)
        for t in ids[start:]:
            sides[t] = "train"
    return sides


def dataset_sides(dataset: Dataset, seed: int = 0) -> tuple[dict[str, str], str]:
    """Clip name to side for a dataset, and how it was decided.

    The fault-filtered lists when the dataset has them; otherwise 70/15/15 stratified by genre over
    every clip found, so training and evaluation derive the same sides from the same folder.
    """
    if dataset.splits_dir is not None:
        return read_split_lists(dataset.splits_dir), f"fault-filtered lists in {dataset.splits_dir}"
    ids = [c.track_id for c in dataset.clips]
    genres = [c.genre for c in dataset.clips]
    return stratified_sides(ids, genres, {"valid": 0.15, "test": 0.15}, seed), "stratified by genre (70/15/15)"


def kfold_sides(track_ids: Sequence[str], genres: Sequence[str], k: int, seed: int) -> list[dict[str, str]]:
    """K stratified folds by track: for each fold, clip name to ``train`` or ``valid`` (the held-out fold)."""
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    ids = np.asarray(track_ids)
    out = []
    for train_idx, held_idx in folds.split(ids, np.asarray(genres)):
        sides = {t: "train" for t in ids[train_idx]}
        sides.update({t: "valid" for t in ids[held_idx]})
        out.append(sides)
    return out


def by_side(
    tracks: Sequence[TrackFeatures], excerpts: Sequence[TrackFeatures], sides: dict[str, str]
) -> dict[str, list[TrackFeatures]]:
    """Group tracks by their side; excerpts join training when their clip trains or is on no side.

    Tracks on no side (e.g. clips the fault-filtered lists leave out) are dropped.
    """
    groups: dict[str, list[TrackFeatures]] = {side: [] for side in SIDES}
    for t in tracks:
        side = sides.get(t.clip.track_id)
        if side is not None:
            groups[side].append(t)
    groups["train"] += [e for e in excerpts if sides.get(e.clip.track_id, "train") == "train"]
    return groups


def as_arrays(
    tracks: Sequence[TrackFeatures], labels: Sequence[str], shifted: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segments of ``tracks`` stacked: maps (n, frames, n_mfcc), label index (n,), track index (n,).

    With ``shifted``, each track's half-segment-shifted views follow its own segments.
    """
    index = {g: i for i, g in enumerate(labels)}
    if not tracks:
        return np.zeros((0, 0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    views = [t.views(shifted) for t in tracks]
    x = np.concatenate(views)
    y = np.concatenate([np.full(len(v), index[t.clip.genre]) for t, v in zip(tracks, views)])
    owner = np.concatenate([np.full(len(v), i) for i, v in enumerate(views)])
    return x.astype(np.float32, copy=False), y.astype(np.int64), owner.astype(np.int64)
