"""Window planning, voting, seeking decodes on real files, prepare, and the batched decide.

The model is the shipped default, whose accuracy is never relied on: the tests check structure,
recording and that batching changes nothing.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genretag import audio
from genretag.audio import AudioError
from genretag.classify import (
    Classifier,
    PreparedTrack,
    TrackResult,
    Unsettled,
    coarse_to_fine,
    plan_windows,
    prepare,
    settled,
    stage_ends,
    vote,
)
from genretag.config import Settings
from genretag.features import FEATURES

SR = FEATURES.sr
SEG = FEATURES.segment_seconds
LABELS = ("a", "b", "c")


# --- plan_windows --------------------------------------------------------------------------------


def test_plan_spreads_k_windows_between_the_edges() -> None:
    s = Settings(windows=7, edge_seconds=10.0, spread_min_seconds=60.0)
    starts = sorted(plan_windows(300.0, s))
    assert len(starts) == 7
    assert starts[0] == pytest.approx(10.0)
    assert starts[-1] == pytest.approx(300.0 - 10.0 - SEG)
    assert np.allclose(np.diff(starts), np.diff(starts)[0])


def test_plan_uses_all_segments_for_short_tracks_and_all_mode() -> None:
    s = Settings(windows=10, spread_min_seconds=60.0)
    assert plan_windows(59.9, s) is None
    assert plan_windows(30.0, s) is None
    assert plan_windows(600.0, s.replace(segments="all")) is None


def test_plan_of_a_track_with_no_more_segments_than_windows_is_its_own_segments() -> None:
    """So a staged vote that runs every stage is exactly the all-segments vote."""
    s = Settings(windows=40, spread_min_seconds=60.0)
    assert sorted(plan_windows(119.0, s)) == [i * SEG for i in range(39)]
    assert len(plan_windows(121.0, s)) == 40


def test_plan_falls_back_to_the_whole_track_when_the_edges_leave_no_room() -> None:
    s = Settings(windows=5, edge_seconds=40.0, spread_min_seconds=60.0)
    starts = sorted(plan_windows(70.0, s))
    assert starts[0] == 0.0 and starts[-1] == pytest.approx(70.0 - SEG)


def test_planned_windows_lie_inside_the_track() -> None:
    for duration in (60.0, 61.5, 200.0, 3600.0):
        for k in (1, 3, 10, 20):
            starts = plan_windows(duration, Settings(windows=k))
            assert starts is not None and len(starts) == k == len(set(starts))
            assert min(starts) >= 0.0 and max(starts) + SEG <= duration + 1e-9


# --- stages --------------------------------------------------------------------------------------


def test_stages_grow_by_a_root_of_two_up_to_k() -> None:
    assert stage_ends(40, Settings(first_windows=10)) == [10, 14, 20, 28, 40]
    assert stage_ends(12, Settings(first_windows=10)) == [10, 12]
    assert stage_ends(5, Settings(first_windows=10)) == [5]
    assert stage_ends(3, Settings(first_windows=1)) == [1, 2, 3]


@pytest.mark.parametrize("n", [5, 12, 39, 40, 100])
def test_every_stage_is_spread_over_the_whole_track(n: int) -> None:
    ends = stage_ends(n, Settings(first_windows=4))
    order = coarse_to_fine(n, 4)
    assert sorted(order) == list(range(n))
    for end in ends:
        taken = sorted(order[:end])
        gaps = np.diff([-1, *taken, n])
        assert gaps.max() <= 2 * math.ceil(n / end), (end, taken)


def test_a_clear_lead_settles_a_close_one_does_not() -> None:
    clear = np.tile([0.8, 0.15, 0.05], (10, 1)) + np.random.default_rng(0).normal(0, 0.02, (10, 3))
    assert settled(clear, population=100, z=1.0)
    close = np.array([[0.6, 0.4, 0.0], [0.35, 0.65, 0.0]] * 5)
    assert not settled(close, population=100, z=1.0)
    assert settled(close, population=10, z=1.0)  # every segment of the track has voted: nothing is left
    assert not settled(clear[:1], population=100, z=0.0)  # one window settles nothing


# --- vote ----------------------------------------------------------------------------------------


def test_vote_picks_the_highest_mean_probability_and_counts_argmaxes() -> None:
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8]])
    genre, votes, mean = vote(probs, LABELS)
    assert genre == "a"
    assert votes == {"a": 2, "b": 0, "c": 1}
    assert mean["c"] == pytest.approx(1.0 / 3)


def test_vote_follows_the_mean_probability_over_the_argmax_count() -> None:
    """Two lukewarm wins for a lose to one confident win for c: the soft vote weighs confidence."""
    probs = np.array([[0.45, 0.1, 0.45 - 1e-3], [0.45, 0.1, 0.45 - 1e-3], [0.0, 0.05, 0.95]])
    genre, votes, mean = vote(probs, LABELS)
    assert votes["a"] == 2 and votes["c"] == 1
    assert genre == "c" and mean["c"] > mean["a"]


# --- seeking window decodes on real files --------------------------------------------------------


def _rchar() -> int:
    """Bytes this process has passed through read() so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture(scope="module")
def long_opus(gtzan_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-minute Ogg Opus file of real music: eight GTZAN blues clips end to end."""
    clips = [audio.load(gtzan_dir / "blues" / f"blues.{i:05d}.opus", 48000) for i in range(8)]
    path = tmp_path_factory.mktemp("opus") / "long.opus"
    sf.write(path, np.concatenate(clips), 48000, format="OGG", subtype="OPUS")
    return path


@pytest.fixture(scope="module")
def coded_tracks(real_library: Path, long_opus: Path) -> dict[str, Path]:
    """One long real track per lossy format whose seeking must be real: mp3, ogg vorbis, opus."""
    files = sorted(p for p in real_library.rglob("*") if p.is_file())
    pick = {}
    for suffix in (".mp3", ".ogg"):
        pick[suffix] = max((p for p in files if p.suffix == suffix), key=lambda p: p.stat().st_size)
    pick[".opus"] = long_opus
    return pick


@pytest.mark.parametrize("suffix", [".mp3", ".ogg", ".opus"])
def test_windows_equal_the_same_span_of_a_full_decode(coded_tracks: dict[str, Path], suffix: str) -> None:
    path = coded_tracks[suffix]
    full = audio.load(path, SR)
    duration = len(full) / SR
    starts = [0.0, 12.345, duration / 2, duration - SEG - 0.5]
    windows = audio.load_windows(path, starts, SEG, SR)
    assert windows.shape == (len(starts), FEATURES.segment_samples)
    edge = int(0.05 * SR)  # each window is resampled alone: ignore resampler edge effects
    for start, window in zip(starts, windows):
        lag = _best_lag(full, window, round(start * SR), edge)
        assert abs(lag - start * SR) <= 0.01 * SR, "window begins more than 10 ms from where it was asked"
        ref = full[lag + edge: lag + len(window) - edge]
        assert np.max(np.abs(window[edge:-edge] - ref)) <= 1e-3 * max(1.0, np.max(np.abs(ref)))


def _best_lag(full: np.ndarray, window: np.ndarray, near: int, edge: int, reach: int = 300) -> int:
    """Offset in ``full`` (within ``reach`` samples of ``near``) where ``window`` matches best."""
    core = window[edge: edge + 4096]
    lags = range(max(0, near - reach), min(len(full) - len(window), near + reach) + 1)
    return min(lags, key=lambda lag: float(np.sum((full[lag + edge: lag + edge + 4096] - core) ** 2)))


@pytest.mark.parametrize("suffix", [".ogg", ".opus"])
def test_window_near_the_end_reads_a_small_part_of_the_file(coded_tracks: dict[str, Path], suffix: str) -> None:
    """Ogg seeking bisects pages: a window at the end must not read the file from the start."""
    path = coded_tracks[suffix]
    duration = sf.info(str(path)).duration
    before = _rchar()
    audio.load_windows(path, [duration - 5.0], SEG, SR)
    read = _rchar() - before
    assert read < 0.5 * path.stat().st_size, f"read {read} of {path.stat().st_size} bytes"


def test_mp3_window_near_the_end_is_not_decoded_from_the_start(coded_tracks: dict[str, Path]) -> None:
    """mpg123 scans frame headers to seek (it reads the file) but must not decode it: compare CPU time."""
    path = coded_tracks[".mp3"]
    duration = sf.info(str(path)).duration
    audio.load_windows(path, [1.0], SEG, SR)  # warm the decoder library
    t0 = time.process_time()
    audio.load_windows(path, [duration - 5.0], SEG, SR)
    window_cpu = time.process_time() - t0
    t0 = time.process_time()
    audio.load(path, SR)
    full_cpu = time.process_time() - t0
    assert window_cpu < full_cpu / 4, f"one window {window_cpu:.3f} s CPU vs full decode {full_cpu:.3f} s"


# --- prepare -------------------------------------------------------------------------------------


def test_prepare_decodes_the_first_stage_of_a_long_track(coded_tracks: dict[str, Path]) -> None:
    track = prepare(coded_tracks[".ogg"], Settings(windows=12, first_windows=6), FEATURES)
    assert track.segment_mode == "spread" and track.stage == 0 and not track.final
    assert 1 <= len(track.features) <= 6
    assert track.features.shape[1:] == FEATURES.shape
    assert track.info.duration >= 60.0


def test_prepare_uses_every_segment_of_a_short_clip(gtzan_dir: Path) -> None:
    clip = gtzan_dir / "blues" / "blues.00000.opus"
    track = prepare(clip, Settings(windows=3), FEATURES)
    assert track.segment_mode == "all"
    assert len(track.features) == math.floor(sf.info(str(clip)).duration / SEG)


def test_prepare_all_mode_on_a_long_track(coded_tracks: dict[str, Path]) -> None:
    path = coded_tracks[".mp3"]
    track = prepare(path, Settings(segments="all"), FEATURES)
    assert track.segment_mode == "all"
    assert len(track.features) > 20


def test_prepare_names_too_short_and_silent_files(tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, np.random.default_rng(0).uniform(-0.5, 0.5, SR // 2).astype(np.float32), SR)
    with pytest.raises(AudioError, match="too short"):
        prepare(short, Settings(), FEATURES)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR * 10, np.float32), SR)
    with pytest.raises(AudioError, match="silent"):
        prepare(silent, Settings(), FEATURES)


def test_descriptors_come_from_22050_hz_audio_whatever_the_models_rate(gtzan_dir: Path, coded_tracks: dict[str, Path]) -> None:
    """A 16-kHz model (musicnn) in a bundle with a descriptor network: the maps are the model's kind, the
    descriptors those of the same audio decoded at the table's 22,050 Hz, a whole clip or a stage's windows."""
    from genretag import descriptors
    from genretag.config import PACKAGED_MODELS
    from genretag.features import MUSICNN

    settings = Settings(model_path=PACKAGED_MODELS / "cnn.genretag", windows=12, first_windows=4)  # it has one
    clip = gtzan_dir / "blues" / "blues.00000.opus"
    whole = prepare(clip, settings, MUSICNN)
    assert whole.segment_mode == "all" and whole.features.shape[1:] == MUSICNN.shape
    np.testing.assert_allclose(whole.descriptors, descriptors.of_windows(audio.load(clip, descriptors.SR)[None, :]),
                               rtol=1e-5, atol=1e-6)
    long_track = coded_tracks[".ogg"]
    staged = prepare(long_track, settings, MUSICNN)
    starts = sorted(plan_windows(staged.info.duration, settings, MUSICNN)[:4])
    heard = audio.load_windows(long_track, starts, MUSICNN.segment_seconds, descriptors.SR)
    assert staged.segment_mode == "spread" and staged.features.shape == (4, *MUSICNN.shape)
    np.testing.assert_allclose(staged.descriptors, descriptors.of_windows(heard), rtol=1e-5, atol=1e-6)


# --- the batched decide --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(Settings(inference_threads=1, workers=1))


@pytest.fixture(scope="module")
def prepared(classifier: Classifier, gtzan_dir: Path, coded_tracks: dict[str, Path]) -> list[PreparedTrack]:
    settings, params = Settings(windows=5), classifier.bundle.features
    return [
        prepare(gtzan_dir / "jazz" / "jazz.00001.opus", settings, params),
        prepare(coded_tracks[".mp3"], settings, params),
        prepare(gtzan_dir / "classical" / "classical.00002.opus", settings, params),
        prepare(coded_tracks[".ogg"], settings, params),
    ]


def test_decide_in_one_batch_equals_deciding_each_track(classifier: Classifier, prepared: list[PreparedTrack]) -> None:
    together = classifier.decide(prepared)
    alone = [classifier.decide([t])[0] for t in prepared]
    assert [r.path for r in together] == [t.path for t in prepared]
    for a, b in zip(together, alone):
        assert a.genre == b.genre and a.votes == b.votes
        assert np.allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-5)


def test_results_record_mode_count_and_evidence(classifier: Classifier, prepared: list[PreparedTrack]) -> None:
    results = classifier.decide(prepared)
    for track, result in zip(prepared, results):
        assert result.segment_mode == track.segment_mode
        assert result.segments_used == len(track.features) == sum(result.votes.values())
        assert result.genre in classifier.bundle.labels
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert result.vote_share == pytest.approx(result.votes[result.genre] / result.segments_used)
        assert result.model_version == classifier.version
    assert [r.segment_mode for r in results] == ["all", "spread", "all", "spread"]
    assert classifier.decide([]) == []


def test_classify_a_real_file_end_to_end(classifier: Classifier, coded_tracks: dict[str, Path]) -> None:
    result = classifier.classify(coded_tracks[".opus"])
    assert result.segment_mode == "spread"
    assert result.segments_used in stage_ends(classifier.settings.windows, classifier.settings)
    assert result.format == "OGG/OPUS"
    assert result.to_dict()["top"][0]["genre"] == result.top(1)[0][0]


def test_an_open_vote_asks_for_the_next_stage(classifier: Classifier, coded_tracks: dict[str, Path]) -> None:
    """With vote_z = inf no vote settles early: every stage is decoded, then K windows decide."""
    settings = Settings(windows=8, first_windows=6, vote_z=math.inf)  # two stages: 6 windows, then 8
    path = coded_tracks[".ogg"]
    staged = Classifier(classifier.bundle, settings)
    first = staged.decide([prepare(path, settings, staged.bundle.features)])[0]
    assert isinstance(first, Unsettled) and first.stage == 1 and len(first.probabilities) <= 6
    second = prepare(path, settings, staged.bundle.features, after=first)
    assert second.final and second.earlier is first.probabilities
    result = staged.decide([second])[0]
    assert isinstance(result, TrackResult) and result.segments_used == len(first.probabilities) + len(second.features)
    assert staged.classify(path).segments_used == result.segments_used <= 8


def test_a_clear_vote_stops_after_the_first_stage(classifier: Classifier, coded_tracks: dict[str, Path]) -> None:
    """vote_z = 0 stops as soon as any genre leads: the first stage's windows decide."""
    settings = Settings(windows=40, first_windows=5, vote_z=0.0)
    result = Classifier(classifier.bundle, settings).classify(coded_tracks[".mp3"])
    assert result.segment_mode == "spread" and result.segments_used <= 5


def test_a_full_staged_vote_equals_the_all_segments_vote(classifier: Classifier, long_opus: Path) -> None:
    """A 4-minute track has 80 segments; with K = 80 its windows are its segments, decoded by seeking."""
    everything = Classifier(classifier.bundle, Settings(segments="all")).classify(long_opus)
    staged = Classifier(classifier.bundle, Settings(windows=80, vote_z=math.inf)).classify(long_opus)
    assert staged.segment_mode == "spread" and everything.segment_mode == "all"
    assert staged.segments_used == everything.segments_used == 80
    assert staged.genre == everything.genre
    assert np.allclose(list(staged.probabilities.values()), list(everything.probabilities.values()), atol=0.01)
