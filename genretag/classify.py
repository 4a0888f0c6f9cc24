"""One track to one result: choose windows, decode, featurise, predict, vote.

This is the single classification path. ``genretag classify``, the local-mode scan and the Celery
task all go through :class:`Classifier`. The work is split in two so callers can overlap it:
:func:`prepare` (decode and MFCC: CPU-bound, no model, safe in any process) and
:meth:`Classifier.decide` (one batched forward pass for any number of prepared tracks, then votes).

A long track is voted in stages, a sequential test: the first stage decodes ``first_windows``
windows spread over the track; while the vote is still open (:func:`settled`), the next stage
adds windows in between, up to ``windows`` in all. A clear-cut track costs a few windows, a close
one gets them all. :meth:`Classifier.decide` answers :class:`Unsettled` for a track that needs
another stage, and :func:`prepare` takes that answer to decode the next one.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from genretag import audio, descriptors, features, fusion
from genretag.bundle import Bundle, load_bundle, read_meta
from genretag.config import Settings
from genretag.features import FEATURES, FeatureParams


@dataclass(frozen=True)
class PreparedTrack:
    """A track's feature maps, ready for the model; picklable, so it can cross process boundaries."""

    path: str
    info: audio.AudioInfo
    segment_mode: str  # "all" (every segment) or "spread" (windows spread over the track)
    features: np.ndarray  # (n_segments, frames, n_mfcc): this stage's windows, or every segment
    stage: int = 0
    final: bool = True  # no further stage: the vote is decided with what is here
    earlier: np.ndarray | None = None  # (n, n_labels) probabilities of the earlier stages' windows
    descriptors: np.ndarray | None = None  # (n_columns,) of every loud window heard so far; None: not asked for
    described: int = 0  # samples behind ``descriptors`` (to pool the next stage's in)


@dataclass(frozen=True)
class Unsettled:
    """A staged vote still open: decode stage ``stage`` next, then vote with ``probabilities`` too."""

    path: str
    info: audio.AudioInfo
    stage: int
    probabilities: np.ndarray  # (n, n_labels) of every window decoded so far
    descriptors: np.ndarray | None = None  # of the windows decoded so far
    described: int = 0


@dataclass(frozen=True)
class TrackResult:
    """The genre of one track, with the evidence behind it."""

    path: str
    genre: str
    confidence: float  # calibrated probability of ``genre`` (fused with the descriptor network when the bundle has one)
    uncertain: bool  # ``confidence`` below ``Settings.min_confidence``
    runner_up: str | None  # the second genre when it is close (``Settings.runner_up_ratio``)
    vote_share: float  # fraction of segments that voted for ``genre``
    mean_probability: float  # mean over segments of the CNN's probability of ``genre``
    probabilities: dict[str, float]  # calibrated probability per genre, in label order; sums to 1
    votes: dict[str, int]  # segments won per genre, in label order
    segments_used: int
    segment_mode: str
    duration: float  # seconds
    format: str
    model_version: str

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable genres with their calibrated probabilities."""
        return sorted(self.probabilities.items(), key=lambda kv: kv[1], reverse=True)[:k]

    def label(self) -> str:
        """``jazz``, or ``uncertain: jazz or classical`` (the runner-up only when close)."""
        return fusion.Call(self.genre, self.confidence, self.uncertain, self.runner_up).label()

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "top": [{"genre": g, "probability": p} for g, p in self.top()]}


def plan_windows(duration: float, settings: Settings, params: FeatureParams = FEATURES) -> list[float] | None:
    """Start times (s) of the windows a staged vote may use, in stage order, or ``None`` for every segment.

    Tracks shorter than ``spread_min_seconds`` and ``segments == "all"`` use every segment, as
    training does. A longer track gets at most ``settings.windows`` windows: its own segments if it
    holds no more (so a vote that runs every stage is exactly the all-segments vote), else windows
    spread evenly between ``edge_seconds`` from each end. They come ordered coarse to fine: each
    stage's windows (:func:`stage_ends`) are spread over the whole track.
    """
    if settings.segments == "all" or duration < settings.spread_min_seconds:
        return None
    seg = params.segment_seconds
    n_segments = int(duration // seg)
    if n_segments <= settings.windows:
        grid = [i * seg for i in range(n_segments)]
    else:
        first = settings.edge_seconds
        last = duration - settings.edge_seconds - seg
        if last <= first:
            first, last = 0.0, max(0.0, duration - seg)
        grid = [float(t) for t in np.linspace(first, last, settings.windows)]
    return [grid[i] for i in coarse_to_fine(len(grid), settings.first_windows)]


def stage_ends(n_windows: int, settings: Settings) -> list[int]:
    """How many of ``n_windows`` planned windows have been decoded after each stage.

    The first stage takes ``first_windows``; each next stage about 1.4 times as many in all (a
    factor of the square root of 2: two stages double the count), the last stage all of them. A
    stage that would leave less than a fifth more for the last one takes them all instead.
    """
    ends, size = [], float(max(1, min(settings.first_windows, n_windows)))
    while n_windows >= 1.2 * round(size):
        if not ends or round(size) > ends[-1]:
            ends.append(round(size))
        size *= math.sqrt(2)
    return ends + [n_windows]


def coarse_to_fine(n: int, first: int) -> list[int]:
    """An order of ``range(n)`` whose every beginning is spread over it: ``first`` evenly spaced, then
    always the position farthest from those taken (ties go to the one farthest from this round's
    picks, so a partial round is spread too), like a 1-D farthest-point sampling."""
    positions = np.arange(n)
    order = list(dict.fromkeys(int(i) for i in np.round(np.linspace(0, n - 1, max(1, min(first, n))))))
    gap = np.min(np.abs(positions[:, None] - np.array(order)[None, :]), axis=1).astype(float)
    level, this_round = -1.0, []
    while len(order) < n:
        if gap.max() != level:
            level, this_round = gap.max(), []
        ties = np.flatnonzero(gap == level)
        if this_round:
            i = int(ties[np.argmax(np.min(np.abs(ties[:, None] - np.array(this_round)[None, :]), axis=1))])
        else:
            i = int(ties[len(ties) // 2])
        order.append(i)
        this_round.append(i)
        gap = np.minimum(gap, np.abs(positions - i))
    return order


def settled(probabilities: np.ndarray, population: int, z: float) -> bool:
    """Whether windows voting so far decide the track as all its ``population`` segments would.

    A paired test on the leading genre's probability lead over the runner-up, per window: settled
    when the mean lead exceeds ``z`` standard errors, the error shrunk by the finite-population
    correction (all the track's segments seen: no error left). One window settles nothing.
    """
    n = len(probabilities)
    if n >= population:
        return True
    if n < 2:
        return False
    mean = probabilities.mean(axis=0)
    second, first = np.argsort(mean)[-2:]
    lead = probabilities[:, first] - probabilities[:, second]
    error = lead.std(ddof=1) / math.sqrt(n) * math.sqrt((population - n) / max(population - 1, 1))
    return bool(lead.mean() > z * error)


def at_model_rate(windows: np.ndarray, rate: int, params: FeatureParams) -> np.ndarray:
    """Windows (n, samples) decoded at ``rate`` as the model's features take them: at ``params.sr``, one
    segment long (a window decoded at the descriptors' rate serves both, so no file is decoded twice)."""
    if rate != params.sr and len(windows):
        windows = audio.resample(np.ascontiguousarray(windows.T), rate, params.sr).T
    return np.ascontiguousarray(windows[:, :params.segment_samples])


@functools.lru_cache(maxsize=4)
def wants_descriptors(model_path: Path) -> bool:
    """The bundle at ``model_path`` holds a descriptor network (read once per process from its meta)."""
    return "descriptor" in read_meta(model_path)


def prepare(
    path: str | os.PathLike[str], settings: Settings, params: FeatureParams, after: Unsettled | None = None
) -> PreparedTrack:
    """Decode what the vote needs next and compute its feature maps of kind ``params`` (the bundle's: no
    default, so no caller computes another kind than its model reads); raises :class:`audio.AudioError`.

    Without ``after``, the first stage (or every segment); with it, the stage it asks for. When the
    model has a descriptor network, each stage also computes the descriptors of its loud windows and
    pools them with the earlier stages', so the row describes all the audio the vote heard (a track
    voted on every segment: the whole track). The descriptors need 22,050 Hz; a model at another rate
    (musicnn, 16 kHz) gets the same decoded audio resampled.
    """
    info = after.info if after else audio.probe(path)
    starts = plan_windows(info.duration, settings, params)
    describe = wants_descriptors(settings.model_path)
    rate = descriptors.SR if describe else params.sr  # decode once, at the descriptors' rate when they are wanted
    if starts is None:
        heard = audio.load(path, rate)
        y = audio.resample(heard, rate, params.sr)
        maps = features.extract(y, params)
        row = descriptors.of_windows(heard[None, :]) if describe and len(maps) else None
        track = PreparedTrack(os.fspath(path), info, "all", maps, descriptors=row, described=len(heard))
    else:
        stage = after.stage if after else 0
        ends = stage_ends(len(starts), settings)
        final = stage == len(ends) - 1
        wanted = sorted(starts[ends[stage - 1] if stage else 0: ends[stage]])
        try:
            heard = audio.load_windows(path, wanted, params.segment_seconds, rate)
        except audio.AudioError:
            if after is None:
                raise
            heard, final = np.zeros((0, round(params.segment_seconds * rate)), np.float32), True  # cut short: vote with what decoded
        windows = at_model_rate(heard, rate, params)
        maps = features.of_segments(windows, params)
        earlier = after.probabilities if after else None
        loud = heard[features.loud_enough(windows, params)]
        row, described = (after.descriptors, after.described) if after else (None, 0)
        if describe and len(loud):
            new = descriptors.of_windows(loud)
            row = new if row is None else descriptors.pooled([row, new], [described, loud.size])
            described += loud.size
        track = PreparedTrack(os.fspath(path), info, "spread", maps, stage, final, earlier, row, described)
    if track.final and len(maps) == 0 and (track.earlier is None or len(track.earlier) == 0):
        if info.duration < params.min_seconds:
            reason = f"too short: {info.duration:.2f} s of audio, at least {params.min_seconds:g} s needed"
        else:
            reason = f"silent: no segment louder than {params.silence_db:g} dBFS"
        raise audio.AudioError(path, reason)
    return track


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

    def __init__(self, bundle: Bundle, settings: Settings, threads: int | None = None) -> None:
        """``threads``: the interpreters' threads; default ``settings.threads_per_worker``."""
        self.bundle = bundle
        self.settings = settings
        threads = threads or settings.threads_per_worker
        self.predict = bundle.predictor(threads)
        self.fuse = bundle.fusion()
        self.describe = bundle.descriptor_predictor(threads) if bundle.descriptor else None

    @classmethod
    def load(cls, settings: Settings, threads: int | None = None) -> Classifier:
        return cls(load_bundle(settings.model_path), settings, threads)

    @property
    def version(self) -> str:
        return self.bundle.version

    def decide(self, tracks: Sequence[PreparedTrack]) -> list[TrackResult | Unsettled]:
        """Vote on prepared tracks after one forward pass over all their segments.

        A track whose staged vote is still open comes back as :class:`Unsettled`: hand it to
        :func:`prepare` for the next stage.
        """
        if not tracks:
            return []
        probs = self.predict(np.concatenate([t.features for t in tracks]))
        bounds = np.cumsum([0] + [len(t.features) for t in tracks])
        out: list[TrackResult | Unsettled] = []
        for track, a, b in zip(tracks, bounds[:-1], bounds[1:]):
            p = probs[a:b] if track.earlier is None else np.concatenate([track.earlier, probs[a:b]])
            population = int(track.info.duration // self.bundle.features.segment_seconds)
            if track.final or settled(p, population, self.settings.vote_z):
                out.append(self._result(track, p))
            else:
                out.append(Unsettled(track.path, track.info, track.stage + 1, p, track.descriptors, track.described))
        return out

    def classify(self, path: str | os.PathLike[str]) -> TrackResult:
        """Prepare and decide one file, stage by stage; raises :class:`audio.AudioError` for bad input."""
        after = None
        while True:
            outcome = self.decide([prepare(path, self.settings, self.bundle.features, after)])[0]
            if isinstance(outcome, TrackResult):
                return outcome
            after = outcome

    def _result(self, track: PreparedTrack, probs: np.ndarray) -> TrackResult:
        """The CNN's vote, fused with the descriptor network's output when there is one, calibrated, then the call."""
        labels = self.bundle.labels
        _, votes, mean = vote(probs, labels)
        described = None
        if self.describe is not None and track.descriptors is not None:
            described = self.describe(track.descriptors[None, :])[0]
        fused = self.fuse(np.array([mean[g] for g in labels]), described)[0]
        decision = fusion.call(fused, labels, self.settings.min_confidence, self.settings.runner_up_ratio)
        genre = decision.genre
        n = len(probs)
        return TrackResult(
            path=track.path,
            genre=genre,
            confidence=decision.confidence,
            uncertain=decision.uncertain,
            runner_up=decision.runner_up,
            vote_share=votes[genre] / n,
            mean_probability=mean[genre],
            probabilities={g: float(p) for g, p in zip(labels, fused)},
            votes=votes,
            segments_used=n,
            segment_mode=track.segment_mode,
            duration=track.info.duration,
            format=track.info.format,
            model_version=self.version,
        )
