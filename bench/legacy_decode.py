"""The decoder genretag had before PyAV (genretag/audio.py at 9e82c50), kept only as bench/decode.py's baseline.

libsndfile (soundfile) with soxr HQ for what it reads, seeking once per window in one open file;
an ``ffmpeg`` subprocess (``-ac 1 -ar SR``: FFmpeg's own downmix and resampler) for m4a and the
other containers libsndfile cannot read, decoding the whole file for ``probe`` and again for the
windows. Not used by the product.
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import soundfile as sf
import soxr


def sf_probe(path: str) -> float:
    """Duration (s) from libsndfile's header."""
    return sf.info(path).duration


def sf_load(path: str, sr: int) -> np.ndarray:
    """The whole file, mean of the channels, soxr HQ to ``sr``."""
    data, native = sf.read(path, dtype="float32", always_2d=True)
    return _mono_resampled(data, native, sr)


def sf_windows(path: str, starts: list[float], seconds: float, sr: int) -> np.ndarray:
    """One open file, one seek per window, each window resampled on its own (the old load_windows)."""
    length = int(round(seconds * sr))
    out = np.zeros((len(starts), length), np.float32)
    with sf.SoundFile(path) as f:
        native = f.samplerate
        native_len = int(round(seconds * native))
        common = math.gcd(native, sr)
        for i, start in enumerate(starts):
            f.seek(min(max(0, round(start * common)) * (native // common), f.frames))
            data = f.read(native_len, dtype="float32", always_2d=True)
            if len(data):
                piece = _mono_resampled(data, native, sr)[:length]
                out[i, : len(piece)] = piece
    return out


def ffmpeg_decode(path: str, sr: int) -> np.ndarray:
    """The whole file through an ffmpeg subprocess, mono float32 at ``sr``."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "f32le", "-ac", "1", "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=True)
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def ffmpeg_windows(path: str, starts: list[float], seconds: float, sr: int) -> tuple[float, np.ndarray]:
    """The old path for an m4a: ``probe`` decoded it whole, ``load_windows`` decoded it whole again."""
    duration = len(ffmpeg_decode(path, sr)) / sr
    y = ffmpeg_decode(path, sr)
    length = int(round(seconds * sr))
    out = np.zeros((len(starts), length), np.float32)
    for i, start in enumerate(starts):
        piece = y[int(start * sr): int(start * sr) + length]
        out[i, : len(piece)] = piece
    return duration, out


def _mono_resampled(data: np.ndarray, native: int, sr: int) -> np.ndarray:
    mono = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    return soxr.resample(mono, native, sr, quality="HQ").astype(np.float32) if native != sr else mono
