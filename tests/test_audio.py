"""Decoding real files, and the typed errors for input that is not audio."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from genretag import audio


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
    assert str(path) in str(err.value)
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


def test_m4a_needs_ffmpeg(tmp_path):
    path = tmp_path / "song.m4a"
    if shutil.which("ffmpeg"):
        sf.write(tmp_path / "src.wav", np.zeros(22050, np.float32) + 0.1, 22050)
        os.system(f"ffmpeg -v error -i {tmp_path / 'src.wav'} {path}")
        assert len(audio.load(path, 22050)) > 20000
    else:
        path.write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(1000))
        expect_error(path, "install ffmpeg")


def test_windows_are_read_by_seeking(gtzan_dir):
    path = gtzan_dir / "jazz" / "jazz.00003.opus"
    windows = audio.load_windows(path, [0.0, 12.0, 28.5], 3.0, 22050)
    assert windows.shape == (3, 66150)
    full = audio.load(path, 22050)
    middle = full[12 * 22050: 15 * 22050]
    assert np.corrcoef(windows[1][2000:-2000], middle[2000:-2000])[0, 1] > 0.99
    tail = len(full) - int(28.5 * 22050)
    assert np.all(windows[2][tail + 2000:] == 0)  # past the end is zero-padded
