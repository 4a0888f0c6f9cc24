"""Real audio files in the formats a library holds, encoded in the test with PyAV (FFmpeg's libraries, no binary).

The lead will unify this with the decoder helper's own encoder helper.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# suffix -> (container format, codec, sample rate, sample format)
ENCODINGS = {
    ".mp3": ("mp3", "libmp3lame", 44100, "fltp"),
    ".ogg": ("ogg", "vorbis", 44100, "fltp"),
    ".opus": ("ogg", "libopus", 48000, "flt"),
    ".flac": ("flac", "flac", 44100, "s16"),
    ".m4a": ("ipod", "aac", 44100, "fltp"),
    ".wma": ("asf", "wmav2", 44100, "fltp"),
}


def decode(path: Path, rate: int | None = None) -> np.ndarray:
    """Every sample of ``path`` as float32 (channels, n) at the stream's rate (or ``rate``), via PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="mono" if rate else None, rate=rate)
        chunks = [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(chunks, axis=1)


def audio_hash(path: Path) -> str:
    """sha256 of the decoded samples: equal before and after a tag write when no audio frame changed."""
    return hashlib.sha256(np.ascontiguousarray(decode(path)).tobytes()).hexdigest()


def encode(source: Path, dest: Path, seconds: float | None = None) -> Path:
    """Re-encode ``source`` (any format PyAV reads) to ``dest``, whose suffix picks the format; stereo."""
    fmt, codec, rate, sample_format = ENCODINGS[dest.suffix]
    y = decode(source, rate)[0]
    if seconds is not None:
        y = y[: int(seconds * rate)]
    stereo = np.stack([y, y]).astype(np.float32)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dest), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        stream.bit_rate = 128000  # wmav2 will not open without one
        resampler = av.AudioResampler(format=sample_format, layout="stereo", rate=rate)
        step = 4096
        for start in range(0, stereo.shape[1], step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo[:, start:start + step]), format="fltp",
                                               layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for piece in resampler.resample(frame):
                for packet in stream.encode(piece):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dest
