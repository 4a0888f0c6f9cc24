"""Splits by track, never by segment: every segment of a clip lands on the side of its clip.

Sides come from the fault-filtered lists (``splits/{train,valid,test}_filtered.txt``, entries like
``blues/blues.00012.wav``, matched by clip name) when present, otherwise from a split stratified by
genre. Cross-validation folds are stratified by genre too, and with the lists they hold whole artist
blocks out (:func:`artist_blocks`), so that CV, like the lists, scores artists training never heard.
Excerpts follow their clip's side by name; they only ever train, so an excerpt whose clip sits on an
evaluation side (or in a held-out block) is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


def artist_blocks(sides: dict[str, str]) -> dict[str, str]:
    """Clip name to its artist block: a run of consecutive listed clips of one genre on one side.

    The lists keep each artist on one side, and GTZAN numbers an artist's clips consecutively, so such
    a run never splits an artist (it may hold several). Clips on no list are skipped in the ordering
    (a fault left out does not cut a run) and get no block. Blocks are named ``genre:side:first``.
    """
    blocks: dict[str, str] = {}
    run: tuple[tuple[str, str], str] | None = None
    for clip in sorted(sides):  # "blues.00012": by genre, then by number
        genre, side = clip.split(".")[0], sides[clip]
        if run is None or run[0] != (genre, side):
            run = ((genre, side), f"{genre}:{side}:{clip.split('.')[-1]}")
        blocks[clip] = run[1]
    return blocks


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


def kfold_sides(track_ids: Sequence[str], genres: Sequence[str], k: int, seed: int,
                blocks: dict[str, str] | None = None) -> list[dict[str, str]]:
    """K folds stratified by genre: for each, clip name to ``train`` or ``valid`` (the held-out fold).

    Without ``blocks``, folds by track. With them (:func:`artist_blocks`), a fold holds whole blocks
    out: every clip of a held-out block is ``valid``, not only ``track_ids``, so its excerpts do not
    train either. Every track and excerpt used must then have a block (be on the lists).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    ids = np.asarray(track_ids)
    if blocks is None:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(ids, np.asarray(genres))
    else:
        groups = np.asarray([blocks[t] for t in ids])
        splits = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(ids, np.asarray(genres), groups)
    out = []
    for train_idx, held_idx in splits:
        if blocks is None:
            sides = {t: "train" for t in ids[train_idx]}
            sides.update({t: "valid" for t in ids[held_idx]})
        else:
            training = {blocks[t] for t in ids[train_idx]}
            sides = {t: "train" if block in training else "valid" for t, block in blocks.items()}
        out.append(sides)
    return out


@dataclass(frozen=True)
class CvPlan:
    """What K-fold CV runs on: the pool of tracks, the excerpts that may train, the blocks held out whole."""

    pool: list[TrackFeatures]
    excerpts: list[TrackFeatures]
    blocks: dict[str, str] | None  # None: folds by track
    split: str  # how, for the report

    @property
    def folds_by(self) -> str:
        return "track" if self.blocks is None else "artist"

    def folds(self, k: int, seed: int) -> list[dict[str, str]]:
        ids = [t.clip.track_id for t in self.pool]
        return kfold_sides(ids, [t.clip.genre for t in self.pool], k, seed, self.blocks)


def cv_plan(dataset: Dataset, tracks: Sequence[TrackFeatures], excerpts: Sequence[TrackFeatures], k: int,
            folds_by: str = "artist") -> CvPlan:
    """Every track not on the test side, and the excerpts of clips not on it, for K-fold CV.

    ``folds_by="artist"`` with the fault-filtered lists holds whole artist blocks out, and then uses only
    listed tracks and excerpts (an unlisted clip's artist is unknown, and the shipped models leave
    unlisted excerpts out too). Without the lists, or with ``"track"``, folds are by track.
    """
    sides, how = dataset_sides(dataset)
    blocks = artist_blocks(sides) if folds_by == "artist" and dataset.splits_dir is not None else None
    usable = (lambda c: sides.get(c.track_id) != "test") if blocks is None else \
        (lambda c: sides.get(c.track_id) in ("train", "valid"))
    unit = "by track" if blocks is None else "holding out whole artist blocks (runs of one genre's clips on one list)"
    return CvPlan([t for t in tracks if usable(t.clip)], [e for e in excerpts if usable(e.clip)], blocks,
                  f"stratified {k}-fold {unit} over clips not on the test side ({how})")


def fold_excerpts(excerpts: Sequence[TrackFeatures], fold: dict[str, str]) -> list[TrackFeatures]:
    """The excerpts that may train in ``fold``: those of clips the fold does not hold out."""
    return [e for e in excerpts if fold.get(e.clip.track_id, "train") == "train"]


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
