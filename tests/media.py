"""Real audio in every format, encoded at test time with PyAV's own encoders (no ffmpeg binary).

``encode`` writes (samples, channels) float32 audio as one of :data:`FORMATS`; ``gtzan_source``
gives a real GTZAN clip as stereo audio at a chosen rate to feed it, so the decoder's tests and
benchmarks compare windows of real music. ``convert`` does both for a file whose suffix names the
format, and ``audio_hash`` fingerprints decoded samples (a tag write must leave it unchanged).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import soxr

# name -> (file suffix, container format, codec, encoder options, sample rate)
FORMATS: dict[str, tuple[str, str, str, dict[str, str], int]] = {
    "mp3": (".mp3", "mp3", "libmp3lame", {}, 44100),
    "m4a": (".m4a", "ipod", "aac", {"aac_pns": "0"}, 44100),  # no noise substitution: decodes are repeatable
    "adts": (".aac", "adts", "aac", {"aac_pns": "0"}, 44100),  # raw AAC: no duration in any header
    "opus": (".opus", "ogg", "libopus", {}, 48000),
    "vorbis": (".ogg", "ogg", "vorbis", {"strict": "experimental"}, 44100),
    "flac": (".flac", "flac", "flac", {}, 44100),
    "wav": (".wav", "wav", "pcm_s16le", {}, 44100),
    "aiff": (".aiff", "aiff", "pcm_s16be", {}, 44100),
    "au": (".au", "au", "pcm_s16be", {}, 44100),
    "alac": (".m4a", "ipod", "alac", {}, 44100),
    "wma": (".wma", "asf", "wmav2", {}, 44100),
}
BY_SUFFIX = {".mp3": "mp3", ".m4a": "m4a", ".aac": "adts", ".opus": "opus", ".ogg": "vorbis", ".flac": "flac",
             ".wav": "wav", ".aiff": "aiff", ".au": "au", ".wma": "wma"}
"""The format :func:`convert` writes for a file suffix (ALAC shares .m4a: ask :func:`encode` for it)."""


def encode(y: np.ndarray, sr: int, path: Path, fmt: str, bit_rate: int = 128_000, **options: str) -> Path:
    """Write ``y`` (samples, channels) float32 at ``sr`` Hz to ``path`` as ``fmt`` (a key of FORMATS).

    The audio must already be at the format's rate (FORMATS[fmt][4]); PyAV only converts the
    sample format and cuts it into the encoder's frame size. ``options`` add encoder options.
    """
    _, container, codec, defaults, rate = FORMATS[fmt]
    options = {**defaults, **options}
    assert sr == rate, f"{fmt} is encoded at {rate} Hz, got {sr}"
    y = np.ascontiguousarray(np.clip(y, -1.0, 1.0), dtype=np.float32)
    layout = "stereo" if y.shape[1] == 2 else "mono"
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout, options=options)
        if codec not in ("flac", "pcm_s16le", "pcm_s16be", "alac"):
            stream.bit_rate = bit_rate
        step = 4096
        for i in range(0, len(y), step):
            frame = av.AudioFrame.from_ndarray(y[i: i + step].reshape(1, -1), format="flt", layout=layout)
            frame.sample_rate, frame.pts = sr, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def gtzan_source(clip: Path, sr: int, seconds: float | None = None) -> np.ndarray:
    """A GTZAN clip as (samples, 2) float32 at ``sr`` Hz, the right channel a quieter, 1-ms later copy.

    Repeated end to end up to ``seconds`` when given, for long tracks of real music.
    """
    with av.open(str(clip)) as f:
        stream = f.streams.audio[0]
        native = stream.codec_context.sample_rate
        mono = np.concatenate([fr.to_ndarray().reshape(-1, fr.layout.nb_channels).mean(axis=1) if not fr.format.is_planar
                               else fr.to_ndarray().mean(axis=0) for fr in f.decode(stream)]).astype(np.float32)
    y = soxr.resample(mono, native, sr).astype(np.float32)
    if seconds is not None:
        y = np.tile(y, int(np.ceil(seconds * sr / len(y))))[: int(seconds * sr)]
    delay = sr // 1000
    right = 0.7 * np.concatenate([np.zeros(delay, np.float32), y[:-delay]])
    return np.stack([y, right], axis=1)


def convert(source: Path, dest: Path, seconds: float | None = None) -> Path:
    """Re-encode the clip ``source`` to ``dest`` (stereo), in the format its suffix names; ``seconds`` long if given."""
    fmt = BY_SUFFIX[dest.suffix]
    rate = FORMATS[fmt][4]
    dest.parent.mkdir(parents=True, exist_ok=True)
    return encode(gtzan_source(source, rate, seconds), rate, dest, fmt)


def decode(path: Path, rate: int | None = None) -> np.ndarray:
    """Every sample of ``path`` as float32 (channels, n) at the stream's rate (or mono at ``rate``), via PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="mono" if rate else None, rate=rate)
        chunks = [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(chunks, axis=1)


def audio_hash(path: Path) -> str:
    """sha256 of the decoded samples: equal before and after a tag write when no audio frame changed."""
    return hashlib.sha256(np.ascontiguousarray(decode(path)).tobytes()).hexdigest()
