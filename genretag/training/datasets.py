"""GTZAN on disk: find the clips in any of three layouts, and their MFCC maps (cached per file).

Layouts, detected from the folder given:

* ``subset``: this project's Opus copy, ``<genre>/<genre>.000NN.opus``, with optional
  ``excerpts/<genre>/<genre>.000NN.opus`` (2-3 s pieces of missing clips) and ``splits/``.
* ``kaggle``: ``Data/genres_original/<genre>/<genre>.000NN.wav``.
* ``original``: ``genres/<genre>/<genre>.000NN.au``.

Folders that are not one of the ten genres (``excerpts``, ``splits``, ...) are never read as genres.
Features come only from :func:`genretag.features.extract`, the path inference uses too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genretag import audio, features
from genretag.features import FEATURES, FeatureParams
from genretag.bundle import GENRES

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # bump when the cached content changes meaning
LAYOUT_EXTENSIONS = {"subset": ".opus", "kaggle": ".wav", "original": ".au"}


class DatasetError(Exception):
    """A folder that holds no GTZAN layout this code reads."""


@dataclass(frozen=True)
class Clip:
    """One audio file of the dataset; ``track_id`` (``blues.00012``) is what splits go by."""

    track_id: str
    genre: str
    path: Path
    excerpt: bool = False


@dataclass(frozen=True)
class Dataset:
    """The clips found under ``root``: full tracks and (training-only) excerpts."""

    root: Path  # the folder holding the genre folders
    layout: str
    clips: tuple[Clip, ...]
    excerpts: tuple[Clip, ...]
    splits_dir: Path | None  # holds {train,valid,test}_filtered.txt when present

    def summary(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "clips_per_genre": dict(sorted(Counter(c.genre for c in self.clips).items())),
            "excerpts_per_genre": dict(sorted(Counter(c.genre for c in self.excerpts).items())),
        }


@dataclass(frozen=True)
class TrackFeatures:
    """A clip with the MFCC maps of its non-silent segments, (n, frames, n_mfcc).

    ``shifted`` holds the segments cut half a segment later (the same rules, from 1.5 s on): real
    audio the ``maps`` segments straddle, extra views for training. Evaluation votes over ``maps``
    only, as inference does.
    """

    clip: Clip
    maps: np.ndarray
    shifted: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, *FEATURES.shape), np.float32))

    def views(self, shifted: bool = False) -> np.ndarray:
        """The segments' maps, followed by the shifted ones when asked."""
        return np.concatenate([self.maps, self.shifted]) if shifted else self.maps


def genre_root(data: Path) -> tuple[Path, str]:
    """The folder holding the genre folders, and the layout name, for a user-given ``data`` folder."""
    data = Path(data).expanduser()
    for candidate in (data / "Data" / "genres_original", data / "genres_original", data / "genres", data):
        if not candidate.is_dir():
            continue
        for layout, ext in LAYOUT_EXTENSIONS.items():
            if any(next((candidate / g).glob(f"{g}.*{ext}"), None) for g in GENRES if (candidate / g).is_dir()):
                return candidate, layout
    raise DatasetError(
        f"{data}: no GTZAN layout found (expected <genre>/<genre>.000NN.opus, "
        "Data/genres_original/<genre>/<genre>.000NN.wav or genres/<genre>/<genre>.000NN.au)"
    )


def discover(data: Path, splits_dir: Path | None = None) -> Dataset:
    """Find every clip (and excerpt) of a GTZAN folder in any supported layout."""
    root, layout = genre_root(data)
    ext = LAYOUT_EXTENSIONS[layout]
    clips = tuple(_clips_in(root, ext, excerpt=False))
    excerpts = tuple(_clips_in(root / "excerpts", ext, excerpt=True)) if (root / "excerpts").is_dir() else ()
    if splits_dir is None:
        for candidate in (root / "splits", Path(data) / "splits"):
            if (candidate / "test_filtered.txt").is_file():
                splits_dir = candidate
                break
    return Dataset(root, layout, clips, excerpts, splits_dir)


def _clips_in(folder: Path, ext: str, excerpt: bool) -> Iterable[Clip]:
    for genre in GENRES:
        for path in sorted((folder / genre).glob(f"{genre}.*{ext}")):
            yield Clip(path.name[: -len(ext)], genre, path, excerpt)


def load_features(clips: Iterable[Clip], cache_dir: Path | None, params: FeatureParams = FEATURES) -> list[TrackFeatures]:
    """MFCC maps of each clip; unreadable or silent clips are skipped with a warning.

    Maps are cached as ``.npz`` keyed by the file's path, size and mtime and the feature
    parameters, so cross-validation runs decode each file once.
    """
    out: list[TrackFeatures] = []
    for clip in clips:
        try:
            maps, shifted = _cached_maps(clip.path, cache_dir, params)
        except audio.AudioError as exc:
            log.warning("skipping %s: %s", clip.path, exc.reason)
            continue
        if len(maps) == 0:
            log.warning("skipping %s: no loud segment of at least %g s", clip.path, params.min_seconds)
            continue
        out.append(TrackFeatures(clip, maps, shifted))
    return out


def _maps_of(path: Path, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """The segments of the clip, and those starting half a segment later (see :class:`TrackFeatures`)."""
    y = audio.load(path, params.sr)
    return features.extract(y, params), features.extract(y[params.segment_samples // 2:], params)


def _cached_maps(path: Path, cache_dir: Path | None, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    if cache_dir is None:
        return _maps_of(path, params)
    st = audio.check_readable(path)
    key = json.dumps([CACHE_VERSION, os.fspath(path.resolve()), st.st_size, st.st_mtime_ns, params.to_dict()])
    cached = Path(cache_dir) / "features" / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"
    if cached.is_file():
        with np.load(cached) as npz:
            return npz["maps"], npz["shifted"]
    maps, shifted = _maps_of(path, params)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(cached.stem + ".partial.npz")
    np.savez(partial, maps=maps, shifted=shifted)
    os.replace(partial, cached)
    return maps, shifted
