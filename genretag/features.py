"""Segments and their feature maps: the one feature path shared by training and inference.

Rules (documented in the README too):

* A track is cut into non-overlapping 3-second segments (66,150 samples at 22,050 Hz).
* A trailing part shorter than 3 s is dropped: padding it would show the model a segment that is
  partly artificial, and a full track always has full segments to vote with.
* A track shorter than 3 s but at least ``min_seconds`` long becomes one segment, padded by
  repeating the audio (wrap padding), so rhythm and timbre continue instead of silence. Shorter
  audio yields no segment.
* Silent segments (RMS below ``silence_db`` dBFS) are dropped: they carry no genre. A track with
  no segment left is reported as silent by :mod:`genretag.classify`.

Each kind of feature map has one frozen params dataclass (its ``kind`` names it in a bundle's
meta) and one function, registered here; :func:`of_segments` dispatches on the params.

The ``mfcc`` kind: 13 MFCCs (n_fft 2048, hop 512, 128 mels on librosa's mel filterbank),
130 frames per segment, time first: shape (n_segments, 130, 13). The dB scale is floored 80 dB
below the loudest mel bin of the *same segment* (``db_floor: "per_segment"``), so a window's
map never depends on which other windows share its batch (librosa's ``power_to_db`` floors the
whole array at once). It is computed in float32 on scipy's FFT from one STFT, which the track
descriptors below reuse; it stays within 1e-3 of librosa's MFCC per segment
(tests/test_features.py) and needs no numba warm-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view


class FeatureParams(Protocol):
    """What every kind's params offer: the segmenting rules and a dict for the bundle's meta."""

    kind: str
    sr: int
    segment_seconds: float
    min_seconds: float
    silence_db: float

    @property
    def segment_samples(self) -> int: ...

    @property
    def shape(self) -> tuple[int, ...]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MfccParams:
    """Everything that fixes the meaning of an MFCC map; stored in every model bundle."""

    kind: str = "mfcc"
    sr: int = 22050
    segment_seconds: float = 3.0
    n_mfcc: int = 13
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    n_frames: int = 130
    top_db: float = 80.0
    db_floor: str = "per_segment"  # the top_db floor is taken per segment, never over a batch
    min_seconds: float = 1.0
    silence_db: float = -60.0

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sr))

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one segment's feature map: (frames, coefficients)."""
        return (self.n_frames, self.n_mfcc)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MFCC = MfccParams()
FEATURES: FeatureParams = MFCC
"""The default kind's parameters: what the shipped model is trained on."""

_REGISTRY: dict[str, tuple[FeatureParams, Any]] = {}


def register(params: FeatureParams, function: Any) -> None:
    """Make ``function(loud_segments, params) -> maps`` the one feature function of ``params.kind``."""
    _REGISTRY[params.kind] = (params, function)


def registered(kind: str) -> FeatureParams:
    """The parameters this code computes for ``kind``; a bundle trained on others is refused."""
    try:
        return _REGISTRY[kind][0]
    except KeyError:
        raise KeyError(f"unknown feature kind {kind!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def params_of(stored: dict[str, Any]) -> FeatureParams:
    """Params of the kind a bundle's ``features`` dict names, built from that dict."""
    return type(registered(stored.get("kind", "mfcc")))(**stored)


def segment(y: np.ndarray, params: FeatureParams = MFCC) -> np.ndarray:
    """Cut mono audio (n_samples,) into segments, shape (n_segments, segment_samples).

    Follows the module's rules for trailing parts and short tracks; may return zero segments.
    """
    n = params.segment_samples
    full = len(y) // n
    if full:
        return np.ascontiguousarray(y[: full * n].reshape(full, n), dtype=np.float32)
    if len(y) >= params.min_seconds * params.sr:
        return np.pad(y, (0, n - len(y)), mode="wrap")[None, :].astype(np.float32)
    return np.zeros((0, n), dtype=np.float32)


def loud_enough(segments: np.ndarray, params: FeatureParams = MFCC) -> np.ndarray:
    """Boolean mask (n_segments,): True where the segment's RMS is at or above ``silence_db`` dBFS."""
    if len(segments) == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(np.square(segments, dtype=np.float64), axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-12)) >= params.silence_db


def of_segments(segments: np.ndarray, params: FeatureParams = MFCC) -> np.ndarray:
    """Drop silent segments, then compute the kind's maps of the rest: (n_loud, *params.shape).

    The step shared by whole tracks and seeked windows, training and inference.
    """
    function = _REGISTRY[params.kind][1]
    return function(segments[loud_enough(segments, params)], params)


def extract(y: np.ndarray, params: FeatureParams = MFCC) -> np.ndarray:
    """Mono audio to the feature maps of its non-silent segments."""
    return of_segments(segment(y, params), params)


# --- the mfcc kind -------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def hann(n_fft: int) -> np.ndarray:
    """The periodic Hann window librosa's STFT uses, float32."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Hz to Slaney's mel scale (linear below 1 kHz, logarithmic above), as librosa's default."""
    hz = np.asarray(hz, np.float64)
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), hz * 3.0 / 200.0)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), mel * 200.0 / 3.0)


@lru_cache(maxsize=4)
def mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's default mel filterbank (``librosa.filters.mel``: Slaney scale and area norm, 0 Hz to sr / 2),
    transposed for ``power @ basis``: (1 + n_fft // 2, n_mels) float32.

    Written out in numpy because importing ``librosa.filters`` pulls in numba and scipy.signal (1.2 s per
    process); tests/test_features.py checks it against librosa's.
    """
    edges = _slaney_hz(np.linspace(_slaney_mel(0.0), _slaney_mel(sr / 2.0), n_mels + 2))
    ramps = edges[:, None] - np.fft.rfftfreq(n_fft, 1.0 / sr)[None, :]
    widths = np.diff(edges)
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return np.ascontiguousarray(weights.T, dtype=np.float32)


@lru_cache(maxsize=4)
def dct_basis(n_mels: int, n_coefficients: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (n_mels, n_coefficients), as librosa's ``mfcc`` applies it."""
    return np.ascontiguousarray(scipy.fft.dct(np.eye(n_mels), type=2, norm="ortho", axis=1)[:, :n_coefficients],
                                dtype=np.float32)


def stft(segments: np.ndarray, params: MfccParams) -> np.ndarray:
    """Complex64 STFT (n, frames, 1 + n_fft // 2) of segments, as librosa's (centred, zero padding)."""
    pad = params.n_fft // 2
    padded = np.pad(np.asarray(segments, np.float32), ((0, 0), (pad, pad)))
    frames = sliding_window_view(padded, params.n_fft, axis=1)[:, :: params.hop_length]
    return scipy.fft.rfft(frames * hann(params.n_fft), axis=-1)


def power(spectrum: np.ndarray) -> np.ndarray:
    """|X|^2 of a complex64 STFT, float32."""
    return np.square(spectrum.real) + np.square(spectrum.imag)


def log_mel(power_spectrum: np.ndarray, params: MfccParams) -> np.ndarray:
    """Mel power in dB (n, frames, n_mels), floored ``top_db`` below each segment's own maximum."""
    db = 10.0 * np.log10(np.maximum(power_spectrum @ mel_basis(params.sr, params.n_fft, params.n_mels), 1e-10))
    return np.maximum(db, db.max(axis=(1, 2), keepdims=True) - params.top_db)


def cepstra(db: np.ndarray, n_coefficients: int) -> np.ndarray:
    """The first ``n_coefficients`` MFCCs (n, frames, n_coefficients) of a dB mel spectrogram."""
    return db @ dct_basis(db.shape[-1], n_coefficients)


def fit_frames(maps: np.ndarray, n_frames: int) -> np.ndarray:
    """Cut or zero-pad the time axis (axis 1) to exactly ``n_frames``, float32 and contiguous."""
    maps = maps[:, :n_frames]
    if maps.shape[1] < n_frames:
        maps = np.pad(maps, ((0, 0), (0, n_frames - maps.shape[1]), (0, 0)))
    return np.ascontiguousarray(maps, dtype=np.float32)


CHUNK = 32  # segments per STFT: bounds the frames' memory (about 2 MB a segment) on long tracks


def mfcc(segments: np.ndarray, params: MfccParams) -> np.ndarray:
    """MFCC maps of segments (n, segment_samples): float32 array (n, n_frames, n_mfcc)."""
    out = [fit_frames(cepstra(log_mel(power(stft(segments[i: i + CHUNK], params)), params), params.n_mfcc),
                      params.n_frames) for i in range(0, len(segments), CHUNK)]
    return np.concatenate(out) if out else np.zeros((0, *params.shape), dtype=np.float32)


register(MFCC, mfcc)
