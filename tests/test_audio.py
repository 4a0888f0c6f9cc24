"""Decoding real files in every format, seeking accuracy, and the typed errors for input that is not audio."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genretag import audio
from media import FORMATS, encode, gtzan_source

SR = 22050


def test_opus_clip_decodes_to_mono_22050(gtzan_dir):
    y = audio.load(gtzan_dir / "blues" / "blues.00000.opus", 22050)
    assert y.ndim == 1 and y.dtype == np.float32
    assert abs(len(y) / 22050 - 30.0) < 0.1
    info = audio.probe(gtzan_dir / "blues" / "blues.00000.opus")
    assert info.format == "OGG/OPUS" and abs(info.duration - 30.0) < 0.1


@pytest.mark.parametrize("fmt,ext", [("WAV", ".wav"), ("FLAC", ".flac"), ("AIFF", ".aiff"), ("AU", ".au"), ("OGG", ".ogg")])
def test_stereo_44100_is_downmixed_and_resampled(tmp_path, fmt, ext):
    t = np.arange(44100 * 2) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, -left * 0 + left], axis=1).astype(np.float32)
    path = tmp_path / f"tone{ext}"
    sf.write(path, stereo, 44100, format=fmt)
    y = audio.load(path, 22050)
    assert abs(len(y) - 44100) <= 64
    spectrum = np.abs(np.fft.rfft(y[1000:21000]))
    assert abs(np.argmax(spectrum) * 22050 / 20000 - 440) < 5


def expect_error(path, fragment: str) -> audio.AudioError:
    with pytest.raises(audio.AudioError) as err:
        audio.load(path, 22050)
    assert fragment in err.value.reason
    assert err.value.path == str(path) and str(path) in str(err.value)
    assert str(path) not in err.value.reason and path.name not in err.value.reason  # the path is carried apart
    return err.value


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp3"
    path.touch()
    expect_error(path, "empty file")


def test_random_bytes_named_mp3(tmp_path):
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).bytes(50_000))
    expect_error(path, "not a readable audio file")


def test_text_named_flac(tmp_path):
    path = tmp_path / "notes.flac"
    path.write_text("these are not audio samples\n" * 100)
    expect_error(path, "not a readable audio file")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "gone.mp3", "file not found")


def test_directory_with_an_audio_name(tmp_path):
    (tmp_path / "album.mp3").mkdir()
    expect_error(tmp_path / "album.mp3", "is a directory")


def test_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.wav"
    os.mkfifo(path)
    expect_error(path, "not a regular file")


def test_a_broken_m4a_names_the_reason(tmp_path):
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(1000))
    expect_error(path, "not a readable audio file")


def test_windows_are_read_by_seeking(gtzan_dir):
    path = gtzan_dir / "jazz" / "jazz.00003.opus"
    windows = audio.load_windows(path, [0.0, 12.0, 28.5], 3.0, 22050)
    assert windows.shape == (3, 66150)
    full = audio.load(path, 22050)
    middle = full[12 * 22050: 15 * 22050]
    assert np.corrcoef(windows[1][2000:-2000], middle[2000:-2000])[0, 1] > 0.99
    tail = len(full) - int(28.5 * 22050)
    assert np.all(windows[2][tail + 2000:] == 0)  # past the end is zero-padded


# --- every format: PyAV encodes a real GTZAN clip, the decoder seeks in it ---------------------------

CLIP = "blues/blues.00002.opus"


@pytest.fixture(scope="module")
def encoded(gtzan_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real 30-s GTZAN clip (stereo: the right channel a quieter, 1-ms later copy) in every format."""
    out = tmp_path_factory.mktemp("formats")
    sources = {rate: gtzan_source(gtzan_dir / CLIP, rate) for rate in {f[4] for f in FORMATS.values()}}
    return {fmt: encode(sources[spec[4]], spec[4], out / f"clip-{fmt}{spec[0]}", fmt) for fmt, spec in FORMATS.items()}


EXACT = ["mp3", "m4a", "adts", "opus", "vorbis", "flac", "wav", "aiff", "au", "alac"]


@pytest.mark.parametrize("fmt", EXACT)
def test_windows_equal_the_same_span_of_a_full_decode(encoded: dict[str, Path], fmt: str) -> None:
    """At offset 0 and mid-track, a window holds the samples of the full decode, at the same place.

    Stated tolerance: lag 0 (no codec delay left), and a difference of at most 1e-4 of the peak,
    which covers float rounding (1e-7) and Opus, whose decoder state after a seek converges to the
    full decode's within its run-up but not bit for bit (5e-6 seen). AAC is encoded without noise
    substitution: that tool fills bands with random noise, different in every decode.
    """
    path = encoded[fmt]
    full = audio.load(path, SR)
    info = audio.probe(path)
    assert abs(info.duration - len(full) / SR) < 0.005, (info.duration, len(full) / SR)
    common = math.gcd(info.samplerate, SR)
    starts = [0.0, 0.1, 12.345, info.duration / 2, info.duration - 3.0]
    windows = audio.load_windows(path, starts, 3.0, SR)
    for start, window in zip(starts, windows):
        at = round(start * common) * (SR // common)  # the start as load_windows moves it onto both rates' grids
        ref = full[at: at + len(window)]
        assert len(ref) == len(window), (start, len(ref))
        assert _best_lag(full, window, at) == at, f"{fmt} window at {start} s misplaced"
        assert np.max(np.abs(window - ref)) <= 1e-4 * np.max(np.abs(ref)), (fmt, start)


def test_wma_windows_sit_within_a_millisecond(encoded: dict[str, Path]) -> None:
    """ASF timestamps count milliseconds: WMA windows are placed to within one (22 samples)."""
    path = encoded["wma"]
    full = audio.load(path, SR)
    starts = [0.0, 12.345, 20.0]
    for start, window in zip(starts, audio.load_windows(path, starts, 3.0, SR)):
        at = round(start * SR)
        lag = _best_lag(full, window, at, reach=200)
        assert abs(lag - at) <= 23, (start, lag - at)
        ref = full[lag: lag + len(window)]
        assert np.corrcoef(window[2000:-2000], ref[2000:-2000])[0, 1] > 0.99


def _best_lag(full: np.ndarray, window: np.ndarray, near: int, reach: int = 300) -> int:
    """Offset in ``full`` (within ``reach`` samples of ``near``) where ``window`` matches best."""
    core = window[1000: 1000 + 4096]
    lags = [lag for lag in range(near - reach, near + reach + 1) if lag + 1000 >= 0 and lag + 5096 <= len(full)]
    return min(lags, key=lambda lag: float(np.sum((full[lag + 1000: lag + 5096] - core) ** 2)))


@pytest.mark.parametrize("fmt", ["mp3", "flac", "vorbis", "opus", "adts"])
def test_duration_of_a_truncated_file_is_where_its_audio_stops(encoded: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    """The header still claims 30 s; probe finds where decoding stops, and windows past it are zero."""
    data = encoded[fmt].read_bytes()
    cut = tmp_path / f"cut{FORMATS[fmt][0]}"
    cut.write_bytes(data[: len(data) // 2])
    full = audio.load(cut, SR)
    info = audio.probe(cut)
    assert 12.0 < len(full) / SR < 18.0
    assert abs(info.duration - len(full) / SR) < 0.5, (info.duration, len(full) / SR)  # ADTS: a bit-rate estimate
    windows = audio.load_windows(cut, [1.0, 25.0], 3.0, SR)
    assert np.abs(windows[0]).max() > 0.01 and not windows[1].any()


def test_m4a_is_classified_with_only_the_virtualenv_on_path(encoded: dict[str, Path], tmp_path: Path) -> None:
    """No ffmpeg program anywhere: the real ``genretag classify`` with PATH holding only the venv's bin."""
    bin_dir = Path(sys.executable).parent
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "GENRETAG_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "TF_CPP_MIN_LOG_LEVEL": "3", "GENRETAG_TF_THREADS": "1"}
    proc = subprocess.run([str(bin_dir / "genretag"), "classify", "--json", str(encoded["m4a"])], env=env,
                          capture_output=True, text=True, timeout=900)  # minutes at load 25 on 2 cores
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["format"] == "MP4/AAC" and abs(result["duration"] - 30.0) < 0.1
    assert result["segments_used"] == 10 and result["genre"]


def test_decoder_warnings_go_to_the_debug_log_with_the_file_name(encoded: dict[str, Path], tmp_path: Path, caplog, capfd) -> None:
    """An mp3 with junk before its first frame: libav complains; nothing reaches stderr."""
    path = tmp_path / "junk-first.mp3"
    path.write_bytes(np.random.default_rng(3).bytes(3000) + encoded["mp3"].read_bytes())
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="genretag.audio"):
        y = audio.load(path, SR)
        audio.load_windows(path, [10.0], 3.0, SR)
    assert abs(len(y) / SR - 30.0) < 0.5
    assert capfd.readouterr().err == ""
    mine = [r.getMessage() for r in caplog.records if r.name == "genretag.audio"]
    assert mine and all(str(path) in m for m in mine), mine
    assert any("libav" in m for m in mine), mine


def test_libsndfile_fallback_is_quiet_too(tmp_path: Path, caplog, capfd) -> None:
    """Random bytes named .mp3: PyAV refuses them, libsndfile's mpg123 prints to fd 2; that goes to the log."""
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).bytes(200_000))
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="genretag.audio"):
        with pytest.raises(audio.AudioError):
            audio.probe(path)
    assert capfd.readouterr().err == ""
    assert any("libsndfile" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
