"""One track to one result: choose windows, decode, featurise, predict, vote.

This is the single classification path. ``genretag classify``, the local-mode scan and the Celery
task all go through :class:`Classifier`. The work is split in two so callers can overlap it:
:func:`prepare` (decode and MFCC: CPU-bound, no TensorFlow, safe in any process) and
:meth:`Classifier.decide` (one batched forward pass for any number of prepared tracks, then votes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from genretag import audio, features
from genretag.config import Settings
from genretag.features import FEATURES, FeatureParams


@dataclass(frozen=True)
class PreparedTrack:
    """A track's feature maps, ready for the model; picklable, so it can cross process boundaries."""

    path: str
    info: audio.AudioInfo
    segment_mode: str  # "all" (every segment) or "spread" (K windows spread over the track)
    features: np.ndarray  # (n_segments, frames, n_mfcc)


@dataclass(frozen=True)
class TrackResult:
    """The genre of one track, with the evidence behind it."""

    path: str
    genre: str
    vote_share: float  # fraction of segments that voted for ``genre``
    mean_probability: float  # mean over segments of the probability of ``genre``
    probabilities: dict[str, float]  # mean probability per genre, in label order
    votes: dict[str, int]  # segments won per genre, in label order
    segments_used: int
    segment_mode: str
    duration: float  # seconds
    format: str
    model_version: str

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable genres with their mean probabilities."""
        return sorted(self.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:k]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "top": [{"genre": g, "probability": p} for g, p in self.top()]}


def plan_windows(duration: float, settings: Settings, params: FeatureParams = FEATURES) -> list[float] | None:
    """Start times (s) of the windows to vote over, or ``None`` to use every segment.

    Long tracks get ``settings.windows`` windows spread evenly between ``edge_seconds`` from each
    end; short tracks and ``segments == "all"`` use all segments, as training does. So does a track
    holding no more segments than there are windows: decoding it whole costs no more and is exact.
    """
    whole = max(settings.spread_min_seconds, settings.windows * params.segment_seconds)
    if settings.segments == "all" or duration < whole:
        return None
    first = settings.edge_seconds
    last = duration - settings.edge_seconds - params.segment_seconds
    if last <= first:
        first, last = 0.0, max(0.0, duration - params.segment_seconds)
    return [float(s) for s in np.linspace(first, last, settings.windows)]


def prepare(path: str | os.PathLike[str], settings: Settings, params: FeatureParams = FEATURES) -> PreparedTrack:
    """Decode what the vote needs and compute its MFCC maps; raises :class:`audio.AudioError`."""
    info = audio.probe(path)
    starts = plan_windows(info.duration, settings, params)
    if starts is None:
        maps = features.extract(audio.load(path, params.sr), params)
        mode = "all"
    else:
        windows = audio.load_windows(path, starts, params.segment_seconds, params.sr)
        maps = features.features_of_segments(windows, params)
        mode = "spread"
    if len(maps) == 0:
        if info.duration < params.min_seconds:
            reason = f"too short: {info.duration:.2f} s of audio, at least {params.min_seconds:g} s needed"
        else:
            reason = f"silent: no segment louder than {params.silence_db:g} dBFS"
        raise audio.AudioError(path, reason)
    return PreparedTrack(os.fspath(path), info, mode, maps)


def vote(probabilities: np.ndarray, labels: Sequence[str]) -> tuple[str, dict[str, int], dict[str, float]]:
    """Soft vote: the genre with the highest mean segment probability; segment argmaxes are counted too.

    Averaging probabilities weighs confident segments over lukewarm ones; with K windows of a long
    track it agreed with the all-segments decision more often than counting argmaxes at the chosen
    K (bench/README.md). Returns the genre, the votes (segments won) per genre and the mean
    probability per genre.
    """
    counts = np.bincount(probabilities.argmax(axis=1), minlength=len(labels))
    mean = probabilities.mean(axis=0)
    winner = int(np.argmax(mean))
    return (
        labels[winner],
        {label: int(c) for label, c in zip(labels, counts)},
        {label: float(p) for label, p in zip(labels, mean)},
    )


class Classifier:
    """A loaded model plus the settings that decide which segments vote. Load once per process."""

    def __init__(self, bundle, settings: Settings) -> None:  # bundle: model.ModelBundle
        from genretag.model import Predictor

        self.bundle = bundle
        self.settings = settings
        self.predict = Predictor(bundle)

    @classmethod
    def load(cls, settings: Settings) -> Classifier:
        from genretag.model import configure_tensorflow, load_bundle

        configure_tensorflow(settings.threads_per_worker)
        return cls(load_bundle(settings.model_path), settings)

    @property
    def version(self) -> str:
        return self.bundle.version

    def decide(self, tracks: Sequence[PreparedTrack]) -> list[TrackResult]:
        """Classify prepared tracks with one forward pass over all their segments."""
        if not tracks:
            return []
        probs = self.predict(np.concatenate([t.features for t in tracks]))
        bounds = np.cumsum([0] + [len(t.features) for t in tracks])
        return [self._result(t, probs[a:b]) for t, a, b in zip(tracks, bounds[:-1], bounds[1:])]

    def classify(self, path: str | os.PathLike[str]) -> TrackResult:
        """Prepare and decide one file; raises :class:`audio.AudioError` for bad input."""
        return self.decide([prepare(path, self.settings, self.bundle.features)])[0]

    def _result(self, track: PreparedTrack, probs: np.ndarray) -> TrackResult:
        labels = self.bundle.labels
        genre, votes, mean = vote(probs, labels)
        n = len(probs)
        return TrackResult(
            path=track.path,
            genre=genre,
            vote_share=votes[genre] / n,
            mean_probability=mean[genre],
            probabilities=mean,
            votes=votes,
            segments_used=n,
            segment_mode=track.segment_mode,
            duration=track.info.duration,
            format=track.info.format,
            model_version=self.version,
        )
