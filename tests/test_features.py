"""The shared feature function: shape, parameters, and the trailing-part, short-track and silence rules."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from genretag import features
from genretag.features import FEATURES, FeatureParams

SR = FEATURES.sr
SEG = FEATURES.segment_samples


def noise(seconds: float, seed: int = 0, level: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * level).astype(np.float32)


def test_parameters_are_the_documented_ones():
    assert (FEATURES.sr, FEATURES.n_mfcc, FEATURES.n_fft, FEATURES.hop_length, FEATURES.n_frames) == (22050, 13, 2048, 512, 130)
    assert SEG == 66150
    assert FEATURES.shape == (130, 13)


def test_thirty_seconds_give_ten_maps_of_130_by_13():
    maps = features.extract(noise(30.0))
    assert maps.shape == (10, 130, 13)
    assert maps.dtype == np.float32


def test_maps_match_librosa_called_directly():
    y = noise(3.0, seed=3)
    direct = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=13, n_fft=2048, hop_length=512).T
    np.testing.assert_allclose(features.extract(y)[0], direct[:130], rtol=1e-4, atol=1e-3)


def test_trailing_part_shorter_than_a_segment_is_dropped():
    y = noise(7.5)
    segs = features.segment(y)
    assert segs.shape == (2, SEG)
    np.testing.assert_array_equal(segs[1], y[SEG: 2 * SEG])


def test_track_shorter_than_a_segment_is_wrap_padded_to_one():
    y = noise(2.0, seed=1)
    segs = features.segment(y)
    assert segs.shape == (1, SEG)
    np.testing.assert_array_equal(segs[0, : len(y)], y)
    np.testing.assert_array_equal(segs[0, len(y):], y[: SEG - len(y)])
    assert features.extract(y).shape == (1, 130, 13)


def test_track_below_min_seconds_gives_no_segment():
    assert features.segment(noise(0.5)).shape == (0, SEG)
    assert features.extract(noise(0.5)).shape == (0, 130, 13)


def test_silent_segments_are_dropped():
    y = np.concatenate([np.zeros(SEG, np.float32), noise(3.0), np.zeros(SEG, np.float32)])
    assert features.loud_enough(features.segment(y)).tolist() == [False, True, False]
    assert features.extract(y).shape == (1, 130, 13)
    assert features.extract(np.zeros(10 * SEG, np.float32)).shape == (0, 130, 13)


def test_very_quiet_but_not_silent_audio_is_kept():
    quiet = noise(3.0, level=10 ** (-50 / 20))  # about -50 dBFS RMS, above the -60 dBFS floor
    assert features.extract(quiet).shape == (1, 130, 13)


@pytest.mark.parametrize("params", [FeatureParams(n_mfcc=20), FeatureParams(hop_length=256, n_frames=259)])
def test_other_parameters_change_the_shape_consistently(params: FeatureParams):
    maps = features.extract(noise(6.0), params)
    assert maps.shape == (2, *params.shape)
