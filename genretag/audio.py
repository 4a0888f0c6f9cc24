"""Decode any supported file to mono float32 at the feature sample rate.

libsndfile (through soundfile) reads wav, au, aiff, flac, ogg vorbis, opus and mp3, and can seek,
so :func:`load_windows` decodes only the windows a vote needs. Containers libsndfile cannot read
(m4a/aac, wma, ...) go through an ``ffmpeg`` subprocess when ffmpeg is installed. Every failure
raises :class:`AudioError`, which names the file and the reason in one line.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".au", ".snd", ".aif", ".aiff", ".aifc", ".flac", ".ogg", ".oga", ".opus", ".mp3",
     ".m4a", ".aac", ".mp4", ".wma", ".alac", ".ape", ".wv", ".mka", ".webm"}
)
"""Extensions the producer treats as audio (matched case-insensitively)."""

PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal a child gets when its parent dies
READ_BLOCK_FRAMES = 1 << 16  # frames per read, so a decoding error mid-file keeps the blocks before it

FFMPEG_ONLY_EXTENSIONS = frozenset({".m4a", ".aac", ".mp4", ".wma", ".alac", ".ape", ".wv", ".mka", ".webm"})


class AudioError(Exception):
    """A file could not be turned into audio; ``reason`` is short and meant for people and the database."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[AudioError], tuple[str, str]]:
        """Rebuild from (path, reason), so the error crosses process boundaries intact."""
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding."""

    format: str  # e.g. "OGG/OPUS", "MP3/MPEG_LAYER_III", "ffmpeg"
    samplerate: int
    channels: int
    duration: float  # seconds


def check_readable(path: str | os.PathLike[str]) -> os.stat_result:
    """Refuse, with a clear reason, what no decoder should be handed: missing, special, empty files."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioError(path, "file not found (missing or a broken symlink)") from None
    except PermissionError:
        raise AudioError(path, "permission denied") from None
    except OSError as exc:  # ELOOP for symlink loops, ENAMETOOLONG, ...
        raise AudioError(path, f"cannot stat file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(path, "not a regular file (FIFO, socket or device)")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied")
    return st


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Header facts of ``path``; raises :class:`AudioError` if no decoder can read it."""
    check_readable(path)
    if _needs_ffmpeg(path):
        y = _ffmpeg_decode(path, 22050)
        return AudioInfo("ffmpeg", 22050, 1, len(y) / 22050)
    try:
        info = sf.info(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        if shutil.which("ffmpeg"):
            y = _ffmpeg_decode(path, 22050)
            return AudioInfo("ffmpeg", 22050, 1, len(y) / 22050)
        raise AudioError(path, f"not a readable audio file ({_sf_reason(exc)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, "no audio frames")
    return AudioInfo(f"{info.format}/{info.subtype}", info.samplerate, info.channels, info.frames / info.samplerate)


def load(path: str | os.PathLike[str], sr: int) -> np.ndarray:
    """The whole file as mono float32 at ``sr`` Hz, shape (n_samples,)."""
    check_readable(path)
    if _needs_ffmpeg(path):
        return _ffmpeg_decode(path, sr)
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            native_sr = f.samplerate
            data = _read_until_error(f)
    except (sf.LibsndfileError, RuntimeError) as exc:
        if shutil.which("ffmpeg"):
            return _ffmpeg_decode(path, sr)
        raise AudioError(path, f"not a readable audio file ({_sf_reason(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "no audio frames")
    return _to_mono_resampled(data, native_sr, sr)


def load_windows(path: str | os.PathLike[str], starts: Sequence[float], seconds: float, sr: int) -> np.ndarray:
    """Windows of ``seconds`` beginning at each of ``starts`` (seconds), shape (len(starts), seconds*sr).

    Each window is decoded by seeking, never from the start of the file, and resampled on its own.
    A start is moved (by a few ms) to the nearest instant that falls on a sample of both the file's
    rate and ``sr``, so a window holds the same samples as that span of a full :func:`load` (up to
    resampler edge effects). A window running past the end of the file is zero-padded.
    """
    check_readable(path)
    length = int(round(seconds * sr))
    out = np.zeros((len(starts), length), dtype=np.float32)
    if _needs_ffmpeg(path):
        y = _ffmpeg_decode(path, sr)
        for i, start in enumerate(starts):
            piece = y[int(start * sr): int(start * sr) + length]
            out[i, : len(piece)] = piece
        return out
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            native_sr = f.samplerate
            native_len = int(round(seconds * native_sr))
            common = math.gcd(native_sr, sr)  # both rates have a sample every 1/common s
            decoded, error = 0, None
            for i, start in enumerate(starts):
                try:
                    f.seek(min(max(0, round(start * common)) * (native_sr // common), f.frames))
                    data = _read_until_error(f, native_len)
                except (sf.LibsndfileError, RuntimeError) as exc:  # past a truncation: the window stays silent
                    error = exc
                    continue
                if data.shape[0] == 0:
                    continue
                decoded += 1
                piece = _to_mono_resampled(data, native_sr, sr)[:length]
                out[i, : len(piece)] = piece
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(path, f"decoding failed ({_sf_reason(exc)})") from None
    if decoded == 0 and error is not None:  # not one window: the file is broken, not silent
        raise AudioError(path, f"decoding failed ({_sf_reason(error)})")
    return out


def _read_until_error(f: sf.SoundFile, frames: int | None = None) -> np.ndarray:
    """Up to ``frames`` frames (default: to the end), shape (n, channels); a file cut short or corrupt
    mid-stream keeps what decoded.

    Raises only when nothing at all could be read, so half a truncated file is still half a track.
    """
    blocks: list[np.ndarray] = []
    remaining = math.inf if frames is None else frames
    try:
        while remaining > 0:
            block = f.read(int(min(remaining, READ_BLOCK_FRAMES)), dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            blocks.append(block)
            remaining -= block.shape[0]
    except (sf.LibsndfileError, RuntimeError):
        if not blocks:
            raise
    if not blocks:
        return np.zeros((0, f.channels), dtype=np.float32)
    return np.concatenate(blocks)


def _to_mono_resampled(data: np.ndarray, native_sr: int, sr: int) -> np.ndarray:
    """(frames, channels) at ``native_sr`` to (samples,) mono at ``sr``."""
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if native_sr != sr:
        mono = soxr.resample(mono, native_sr, sr, quality="HQ").astype(np.float32, copy=False)
    if not np.all(np.isfinite(mono)):
        mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    return mono


def _needs_ffmpeg(path: str | os.PathLike[str]) -> bool:
    suffix = Path(path).suffix.lower()
    if suffix not in FFMPEG_ONLY_EXTENSIONS:
        return False
    if shutil.which("ffmpeg") is None:
        raise AudioError(path, f"unsupported format {suffix}: install ffmpeg to read it")
    return True


def _ffmpeg_decode(path: str | os.PathLike[str], sr: int, timeout: float | None = None) -> np.ndarray:
    """Decode with an ffmpeg subprocess straight to mono float32 at ``sr``."""
    if timeout is None:
        from genretag.config import get_settings

        timeout = get_settings().decode_timeout
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", os.fspath(path), "-f", "f32le", "-ac", "1", "-ar", str(sr), "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, preexec_fn=functools.partial(_die_with_parent, os.getpid()))
    except subprocess.TimeoutExpired:
        raise AudioError(path, f"ffmpeg timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(path, f"ffmpeg could not decode it ({detail[-1] if detail else 'exit ' + str(proc.returncode)})")
    y = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if y.size == 0:
        raise AudioError(path, "no audio frames")
    return y


def _die_with_parent(parent: int) -> None:
    """In the ffmpeg child: be killed when the decoding process dies (a time limit or a crash killed
    it), instead of decoding on, orphaned, for nobody. Linux only; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died between the fork and the prctl
            os._exit(1)


def _sf_reason(exc: Exception) -> str:
    """libsndfile's message without the file name it repeats."""
    text = str(exc)
    text = text.split(": ", 1)[-1].strip() if ": " in text else text
    if not text or "not a regular file" in text:  # libsndfile's words when no format matched; the file was checked
        return "no decoder recognised its data"
    return text
