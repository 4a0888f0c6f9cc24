"""Decode any supported file to mono float32 at the feature sample rate.

PyAV (FFmpeg's libraries, inside its wheel: no ffmpeg program) reads mp3, aac/m4a/mp4, alac, wma,
ogg vorbis, opus, flac, wav, aiff and au, and seeks in all of them, so :func:`load_windows`
decodes only the windows a vote needs, each trimmed to its exact first sample by the frames'
timestamps. libsndfile (through soundfile) reads only the files PyAV refuses to open (a few odd
Ogg files). Every file goes through the same downmix (:func:`_downmix`, the mean of the channels)
and the same resampler (:func:`resample`, soxr HQ): PyAV's own resampler downmixes 3 dB louder,
which changes the MFCCs. libav's warnings go to this module's log at debug level, with the file
name, never to stderr. Every failure raises :class:`AudioError`, whose reason never repeats the path.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
import soxr

from genretag import stderr

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".au", ".snd", ".aif", ".aiff", ".aifc", ".flac", ".ogg", ".oga", ".opus", ".mp3",
     ".m4a", ".aac", ".mp4", ".wma", ".alac", ".ape", ".wv", ".mka", ".webm"}
)
"""Extensions the producer treats as audio (matched case-insensitively)."""

RUN_UP_SECONDS = 0.2  # a window is sought this far before its start: MP3, AAC and Opus decoders need the run-up
CONTEXT_SECONDS = 0.02  # decoded beyond each end of a window, so the resampler's edge effects fall outside it
TAIL_SECONDS = 2.0  # the tail check seeks this far before the end the header gives
TAIL_LIMIT_SECONDS = 30.0  # a tail check decoding more than this past its guess gives the guess up (header wrong)
MAX_BAD_PACKETS = 100  # packets that fail to decode before a damaged file is cut there
READ_BLOCK_FRAMES = 1 << 16  # libsndfile frames per read, so a decoding error mid-file keeps the blocks before it
CONTAINER_NAMES = {"mov,mp4,m4a,3gp,3g2,mj2": "MP4"}  # FFmpeg's demuxer names that say little to people

av.logging.set_level(av.logging.WARNING)  # libav's messages reach Python: captured while a file is open (_opened)
logging.getLogger("libav").addHandler(logging.NullHandler())  # any other one is dropped, never printed on stderr
logging.getLogger("libav").propagate = False


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
    """What a file holds, read from its container without decoding it whole."""

    format: str  # container/codec, e.g. "OGG/OPUS", "MP3/MP3", "MP4/AAC" (libsndfile's: "OGG/VORBIS")
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
    """Format, rate, channels and duration of ``path``; raises :class:`AudioError` if no decoder reads it.

    PyAV's duration is the container's, checked by decoding its last seconds (:func:`_verified_end`),
    so a missing or wrong header duration is found out without decoding the whole file.
    """
    size = check_readable(path).st_size
    with _opened(path) as source:
        frames = _verified_end(source, size) if isinstance(source, _Source) else source.frames
        info = AudioInfo(source.format, source.rate, source.channels, frames / source.rate)
    if info.duration <= 0:
        raise AudioError(path, "no audio frames")
    return info


def load(path: str | os.PathLike[str], sr: int) -> np.ndarray:
    """The whole file as mono float32 at ``sr`` Hz, shape (n_samples,); a damaged tail keeps what decoded."""
    check_readable(path)
    with _opened(path) as source:
        mono = source.span(0, None)
    if mono is None:
        raise AudioError(path, "no audio frames")
    return resample(mono, source.rate, sr)


def load_windows(path: str | os.PathLike[str], starts: Sequence[float], seconds: float, sr: int) -> np.ndarray:
    """Windows of ``seconds`` beginning at each of ``starts`` (seconds), shape (len(starts), seconds*sr).

    The file is opened once; each window is reached by seeking, never by decoding from the start.
    A start is moved (by a few ms) to the nearest instant that falls on a sample of both the file's
    rate and ``sr``, and each window is resampled with ``CONTEXT_SECONDS`` of audio on either side,
    so it holds the same samples as that span of a full :func:`load`. A window running past the end
    of the file (or past the point where a truncated file stops) is zero-padded; raises
    :class:`AudioError` when not one window decodes.
    """
    check_readable(path)
    length = int(round(seconds * sr))
    out = np.zeros((len(starts), length), dtype=np.float32)
    with _opened(path) as source:
        common = math.gcd(source.rate, sr)  # both rates have a sample every 1/common s
        step_native, step_out = source.rate // common, sr // common
        pad = math.ceil(CONTEXT_SECONDS * common)  # context on each side, in units of 1/common s
        decoded = 0
        for i in sorted(range(len(starts)), key=lambda i: starts[i]):
            units = max(0, round(starts[i] * common))
            left = min(pad, units)  # no context before the file's start
            mono = source.span((units - left) * step_native, (round(seconds * common) + left + pad) * step_native)
            if mono is None:
                continue
            decoded += 1
            piece = resample(mono, source.rate, sr)[left * step_out: left * step_out + length]
            out[i, : len(piece)] = piece
    if decoded == 0 and len(starts):
        raise AudioError(path, "decoding failed (no window could be decoded)")
    return out


# --- PyAV ------------------------------------------------------------------------------------------


class _Source:
    """One open container's first audio stream, addressed by sample index from the stream's start."""

    def __init__(self, path: str, container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> None:
        self.path = path
        self.container = container
        self.stream = stream
        ctx = stream.codec_context
        self.rate = int(ctx.sample_rate)
        self.channels = int(ctx.channels)
        name = container.format.name
        self.format = f"{CONTAINER_NAMES.get(name, name.split(',')[0]).upper()}/{ctx.name.upper()}"
        self.time_base: Fraction = stream.time_base
        self._samples_per_tick = (stream.time_base.numerator * self.rate, stream.time_base.denominator)
        self.start_pts = stream.start_time or 0
        self.fresh = True  # nothing read yet: decoding starts at the file's first packet
        self.last_pts: int | None = None  # timestamp of the frame frames() yielded last

    def sample_of(self, pts: int) -> int:
        """The stream's sample index at timestamp ``pts``: ``round((pts - start) * time_base * rate)``, ties to
        even, in integers (the ``Fraction`` product cost 2 us a frame; bench/README.md, 5 Dec, cut 4)."""
        numerator, denominator = self._samples_per_tick
        whole, rest = divmod((pts - self.start_pts) * numerator, denominator)
        return whole + (2 * rest > denominator or (2 * rest == denominator and whole % 2 == 1))

    def pts_of(self, seconds: float) -> int:
        return self.start_pts + math.floor(seconds / self.time_base)

    def seek(self, seconds: float) -> None:
        """To the last key point at or before ``seconds`` (from the file's start when that is before 0.2 s
        and nothing was read yet: a seek to 0 drops an m4a's priming packet)."""
        if self.fresh and seconds < RUN_UP_SECONDS:
            return
        self.fresh = False
        self.container.seek(self.pts_of(max(0.0, seconds)), stream=self.stream, backward=True)

    def frames(self) -> Iterator[np.ndarray]:
        """Decoded frames from here on, each downmixed to mono float32 (n,), the timestamp of each in
        :attr:`last_pts` (``None`` when it has none); stops at the end, at a read error, or after too many
        bad packets."""
        self.fresh = False
        bad = 0
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError:  # a read error or damaged container: the audio ends here
                return
            try:
                frames = packet.decode()
            except av.FFmpegError:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    return
                continue
            for frame in frames:
                self.last_pts = frame.pts
                if frame.sample_rate != self.rate:  # a chained stream at another rate: keep ours
                    yield _downmix(np.stack([resample(c, frame.sample_rate, self.rate) for c in _planar(frame)]))
                else:
                    yield _mono(frame)

    def span(self, first: int, count: int | None) -> np.ndarray | None:
        """Mono samples ``first`` .. ``first + count`` (native rate; ``None``: to the end), or ``None`` when
        nothing decodes there (past the end of a truncated file).

        Seeks ``RUN_UP_SECONDS`` before, then places the decoded audio by the most common value of
        (sample index of a frame's timestamp - samples decoded before it), each frame weighing its
        length, not by the first frame's timestamp alone: FFmpeg gives some Vorbis frames timestamps
        hundreds of samples off (the short blocks of some files, the first page of others). A full
        decode is placed the same way, so it and every window share one time axis.
        """
        self.seek(first / self.rate - RUN_UP_SECONDS)
        chunks: list[np.ndarray] = []
        origins: Counter[int] = Counter()
        decoded = 0
        for samples in self.frames():
            if self.last_pts is not None:
                origins[self.sample_of(self.last_pts) - decoded] += len(samples)
            chunks.append(samples)
            decoded += len(samples)
            if count is not None and len(chunks) > 2 and origins.most_common(1)[0][0] + decoded >= first + count:
                break
        if not chunks:
            return None
        origin = origins.most_common(1)[0][0] if origins else first
        mono = np.concatenate(chunks)[max(0, first - origin):]
        if origin > first:  # the audio's timestamps begin after the span's start: silence before them
            mono = np.concatenate([np.zeros(origin - first, np.float32), mono])
        return mono[:count] if len(mono) else None


@contextmanager
def _opened(path: str | os.PathLike[str]) -> Iterator[_Source | _SfSource]:
    """The file's first audio stream through PyAV, or through libsndfile when PyAV refuses the file.

    libav's messages while it is open are logged at debug level with the file name.
    """
    name = os.fspath(path)
    with av.logging.Capture(local=False) as messages:  # also what FFmpeg's own threads say
        try:
            container = av.open(name, metadata_errors="ignore")
            audio = container.streams.audio
            refused = None if audio and audio[0].codec_context.sample_rate > 0 else "no audio stream it can decode"
        except av.FFmpegError as exc:
            container, refused = None, _av_reason(exc)
        try:
            if refused is None:
                yield _Source(name, container, container.streams.audio[0])
            else:
                log.debug("%s: PyAV cannot read it (%s); trying libsndfile", name, refused)
                with _stderr_logged(name):
                    try:
                        f = sf.SoundFile(name)
                    except (sf.LibsndfileError, RuntimeError) as exc:
                        raise AudioError(path, f"not a readable audio file ({_sf_reason(exc)})") from None
                    with f:
                        yield _SfSource(name, f)
        finally:
            if container is not None:
                container.close()
    for level, component, message in messages:
        log.debug("%s: libav %s: %s", name, component or "-", message.strip())


def _verified_end(source: _Source, size: int) -> int:
    """The stream's length in samples: where decoding near the header's end stops.

    The header's duration (or, when it has none, the size over the bit rate) is checked by seeking
    ``TAIL_SECONDS`` before it and decoding to the end. When nothing decodes there (a truncated
    file), the size-over-bit-rate estimate is checked the same way; a file whose audio runs on far
    past a guess keeps the guess's end as a lower bound rather than being decoded whole.
    """
    stream, container = source.stream, source.container
    header = None
    if stream.duration:
        header = float(stream.duration * stream.time_base)
    elif container.duration:
        header = container.duration / av.time_base
    rate = container.bit_rate or stream.bit_rate
    estimate = size * 8 / rate if rate else None
    fallback = 0
    for guess in dict.fromkeys(g for g in (header, estimate) if g):
        source.seek(max(0.0, guess - TAIL_SECONDS))
        end, first = None, None
        for samples in source.frames():
            if source.last_pts is not None:
                start = source.sample_of(source.last_pts)
                first = start if first is None else first
                end = start + len(samples)
            if end is not None and end > (guess + TAIL_LIMIT_SECONDS) * source.rate:
                break
        else:
            if end is not None:
                return end
            continue
        fallback = max(fallback, end)
    return fallback or round((header or estimate or 0) * source.rate)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """A frame downmixed to mono float32 (n,): exactly :func:`_downmix` of :func:`_planar`.

    Planar float with one or two channels (what the mp3, AAC, Vorbis and Opus decoders give) is read
    straight from the frame's planes: ``to_ndarray`` stacks them and ``numpy.mean`` goes through Python,
    some 7 us a frame. (a + b) / 2 in float32 is what the mean computes, bit for bit.
    """
    planes = frame.planes
    if frame.format.name != "fltp" or len(planes) > 2:
        return _downmix(_planar(frame))
    first = np.frombuffer(planes[0], np.float32, count=frame.samples)
    if len(planes) == 1:
        return first.copy()
    return (first + np.frombuffer(planes[1], np.float32, count=frame.samples)) / 2


def _planar(frame: av.AudioFrame) -> np.ndarray:
    """A frame's samples as (channels, n) float32 in [-1, 1]."""
    a = frame.to_ndarray()
    if not frame.format.is_planar:
        a = a.reshape(-1, frame.layout.nb_channels).T
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if a.dtype == np.int32:
        return (a / 2147483648.0).astype(np.float32)
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if a.dtype == np.int64:
        return (a / 9223372036854775808.0).astype(np.float32)
    return a.astype(np.float32, copy=False)


def _av_reason(exc: av.FFmpegError) -> str:
    """FFmpeg's words for an error, without the file name PyAV appends."""
    return exc.strerror or type(exc).__name__


# --- libsndfile fallback ---------------------------------------------------------------------------


class _SfSource:
    """A file only libsndfile reads, with :class:`_Source`'s ``span`` (libsndfile seeks by sample)."""

    def __init__(self, path: str, f: sf.SoundFile) -> None:
        self.path = path
        self.file = f
        self.rate = f.samplerate
        self.channels = f.channels
        self.frames = f.frames
        self.format = f"{f.format}/{f.subtype}"

    def span(self, first: int, count: int | None) -> np.ndarray | None:
        """Mono samples ``first`` .. ``first + count`` (``None``: to the end), or ``None`` when none decode."""
        try:
            self.file.seek(min(first, self.frames))
            data = _read_until_error(self.file, count)
        except (sf.LibsndfileError, RuntimeError) as exc:  # past a truncation
            log.debug("%s: libsndfile: %s", self.path, _sf_reason(exc))
            return None
        return _downmix(data.T) if len(data) else None


@contextmanager
def _stderr_logged(name: str) -> Iterator[None]:
    """What libsndfile's bundled mpg123 prints straight to file descriptor 2 goes to the log at debug
    level instead (this process's stderr is redirected meanwhile: only the rare fallback pays for it)."""
    lines: list[str] = []
    try:
        with stderr.captured() as lines:
            yield
    finally:
        for line in lines:
            log.debug("%s: libsndfile: %s", name, line.strip())


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


def _sf_reason(exc: Exception) -> str:
    """libsndfile's message without the file name it repeats."""
    text = str(exc)
    text = text.split(": ", 1)[-1].strip() if ": " in text else text
    if not text or "not a regular file" in text:  # libsndfile's words when no format matched; the file was checked
        return "no decoder recognised its data"
    return text


# --- the one downmix and the one resampler ---------------------------------------------------------


def _downmix(samples: np.ndarray) -> np.ndarray:
    """(channels, n) to (n,) float32: the mean of the channels, for every decoder."""
    mono = samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(mono: np.ndarray, native_sr: int, sr: int) -> np.ndarray:
    """Mono audio from ``native_sr`` to ``sr`` with soxr HQ, non-finite samples zeroed: for every decoder.

    ``mono`` may also be (samples, n) for n windows of the same length, resampled in one call.
    """
    if native_sr != sr and len(mono):
        mono = soxr.resample(mono, native_sr, sr, quality="HQ").astype(np.float32, copy=False)
    if not np.all(np.isfinite(mono)):
        mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    return mono
