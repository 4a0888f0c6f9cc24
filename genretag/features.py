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
whole array at once). It is computed in float32 from one STFT, which the track descriptors below
reuse; it stays within 1e-3 of librosa's MFCC per segment (tests/test_features.py) and needs no
numba warm-up. See :func:`rfft` for which FFT runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
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


def one_blas_thread() -> None:
    """Limit this process's BLAS (OpenBLAS, under numpy) to one thread from here on.

    For processes that share the cores with others (local-mode decoders, Celery worker processes):
    the mel and DCT products are BLAS calls, and an OpenBLAS thread per core in each busy process
    only fights over the cores. Classifying 20 long tracks in one process took 14.1 CPU s with
    OpenBLAS's 2 threads, 9.0 with one (MFCC CNN; musicnn 30.1 and 23.7; bench/README.md).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


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
    """Orthonormal DCT-II matrix (n_mels, n_coefficients), as librosa's ``mfcc`` applies it.

    In closed form, so that no runtime process needs ``scipy.fft`` for it.
    """
    n = np.arange(n_mels)[:, None]
    k = np.arange(n_coefficients)[None, :]
    scale = np.where(k == 0, np.sqrt(1.0 / n_mels), np.sqrt(2.0 / n_mels))
    return np.ascontiguousarray(scale * np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)), dtype=np.float32)


SCIPY_FFT_FROM = 1024
"""Frame length from which :func:`rfft` uses scipy's FFT."""


def rfft(frames: np.ndarray) -> np.ndarray:
    """Complex64 real FFT over the last axis.

    scipy's FFT is 2.7x faster on 2048-point frames (the MFCC path), but importing ``scipy.fft`` pulls in
    ``scipy.special`` (+29 MB per process). Below ``SCIPY_FFT_FROM`` points (musicnn's 512) numpy's FFT costs
    under 1 ms per 10 segments more, so a musicnn worker never imports scipy.
    """
    if frames.shape[-1] < SCIPY_FFT_FROM:
        return np.fft.rfft(frames, axis=-1).astype(np.complex64, copy=False)
    import scipy.fft

    return scipy.fft.rfft(frames, axis=-1)


def stft(segments: np.ndarray, params: MfccParams | MusicnnParams | DescriptorParams) -> np.ndarray:
    """Complex64 STFT (n, frames, 1 + n_fft // 2) of segments, as librosa's (centred, zero padding)."""
    pad = params.n_fft // 2
    padded = np.pad(np.asarray(segments, np.float32), ((0, 0), (pad, pad)))
    frames = sliding_window_view(padded, params.n_fft, axis=1)[:, :: params.hop_length]
    return rfft(frames * hann(params.n_fft))


def power(spectrum: np.ndarray) -> np.ndarray:
    """|X|^2 of a complex64 STFT, float32."""
    return np.square(spectrum.real) + np.square(spectrum.imag)


def log_mel(power_spectrum: np.ndarray, params: MfccParams | DescriptorParams) -> np.ndarray:
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


# --- the musicnn kind ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MusicnnParams:
    """musicnn's log-mel patches, as its MSD backbone was trained on (``musicnn.extractor.batch_data``).

    16 kHz, n_fft 512, hop 256, 96 Slaney mels of the power spectrum, ``log10(1 + 10000 * mel)``
    in float32 (musicnn's float16 overflows), 187 frames per patch. A segment is 187 hops long
    (2.992 s), so a clip's segments sit where musicnn's own non-overlapping patches do.
    """

    kind: str = "musicnn"
    sr: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    n_frames: int = 187
    log_scale: float = 10000.0  # the map is log10(1 + log_scale * mel power)
    segment_seconds: float = 2.992  # n_frames * hop_length / sr
    min_seconds: float = 1.0
    silence_db: float = -60.0

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sr))

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one segment's map: (frames, mel bins)."""
        return (self.n_frames, self.n_mels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MUSICNN = MusicnnParams()


def musicnn_logmel(segments: np.ndarray, params: MusicnnParams = MUSICNN) -> np.ndarray:
    """Log-mel maps of segments (n, segment_samples) at 16 kHz: float32 (n, n_frames, n_mels), time first.

    Each segment is taken alone (centred frames, zero padding at its edges), from the same STFT and
    mel filterbank as the mfcc kind; its first 187 frames are musicnn's patch, the one left over is
    centred on the next segment's start.
    """
    out = []
    for i in range(0, len(segments), CHUNK):
        mel = power(stft(segments[i: i + CHUNK], params)) @ mel_basis(params.sr, params.n_fft, params.n_mels)
        out.append(fit_frames(np.log10(1 + params.log_scale * mel), params.n_frames))
    return np.concatenate(out) if out else np.zeros((0, *params.shape), dtype=np.float32)


register(MUSICNN, musicnn_logmel)


# --- track descriptors (the columns of ../shared/gtzan/features/features_30_sec.csv) -------------


@dataclass(frozen=True)
class DescriptorParams:
    """What fixes a track descriptor vector: librosa's defaults for the CSV's columns, on the MFCC path's STFT.

    Left out, from cost and CV gain (docs/descriptors.md): the HPSS columns (harmony, perceptr; 7.6 s a
    30-s clip, +0.003 CV accuracy) and tempo (0.4 s, +0.000). The chroma tuning is fixed at 0 where
    librosa estimates it per clip (piptrack), the dB floor is per segment as for the maps.
    """

    kind: str = "descriptors"
    sr: int = MFCC.sr
    n_fft: int = MFCC.n_fft
    hop_length: int = MFCC.hop_length
    n_mels: int = MFCC.n_mels
    top_db: float = MFCC.top_db
    db_floor: str = "per_segment"
    n_mfcc: int = 20
    n_chroma: int = 12
    tuning: float = 0.0
    roll_percent: float = 0.85
    columns: tuple[str, ...] = (
        "chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "rolloff", "zero_crossing_rate",
        *(f"mfcc{i}" for i in range(1, 21)),
    )  # each gives <name>_mean and <name>_var, in this order (the CSV's, less the columns left out)

    @property
    def names(self) -> list[str]:
        """The descriptor vector's column names, as in the CSV."""
        return [f"{c}_{stat}" for c in self.columns for stat in ("mean", "var")]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "columns": list(self.columns)}


DESCRIPTORS = DescriptorParams()


@dataclass(frozen=True)
class FrameSums:
    """Per window, for each descriptor column: the frame count, the sum and the sum of squares of its values.

    Sums pool: windows decoded in several stages, or windows and whole tracks, add up (:meth:`pooled`)
    and give the mean and variance over every frame heard (:meth:`descriptors`).
    """

    count: np.ndarray  # (n_windows, n_columns) float64
    total: np.ndarray
    squares: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[FrameSums]) -> FrameSums:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("count", "total", "squares")))

    def pooled(self) -> FrameSums:
        """One row: the sums over every window."""
        return FrameSums(*(getattr(self, f).sum(axis=0, keepdims=True) for f in ("count", "total", "squares")))

    def descriptors(self) -> np.ndarray:
        """(n_windows, 2 * n_columns) float64: mean and (population) variance per column, interleaved."""
        mean = self.total / np.maximum(self.count, 1)
        var = np.maximum(self.squares / np.maximum(self.count, 1) - np.square(mean), 0.0)
        return np.stack([mean, var], axis=-1).reshape(len(mean), -1)


@lru_cache(maxsize=4)
def chroma_basis(sr: int, n_fft: int, n_chroma: int, tuning: float) -> np.ndarray:
    """librosa's default chroma filterbank (``librosa.filters.chroma``), transposed: (1 + n_fft // 2, n_chroma)."""
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    bins = n_chroma * np.log2(frequencies / (440.0 * 2.0 ** (tuning / n_chroma) / 16))
    bins = np.concatenate(([bins[0] - 1.5 * n_chroma], bins))
    widths = np.concatenate((np.maximum(bins[1:] - bins[:-1], 1.0), [1]))
    half = np.round(n_chroma / 2)
    d = np.remainder(np.subtract.outer(bins, np.arange(n_chroma, dtype=np.float64)).T + half + 10 * n_chroma,
                     n_chroma) - half
    weights = np.exp(-0.5 * (2 * d / widths[None, :]) ** 2)
    weights /= np.linalg.norm(weights, axis=0, keepdims=True)
    weights *= np.exp(-0.5 * ((bins / n_chroma - 5.0) / 2.0) ** 2)[None, :]
    weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(weights[:, : 1 + n_fft // 2].T, dtype=np.float32)


def _framed_sums(values: np.ndarray, n_frames: int, params: DescriptorParams) -> np.ndarray:
    """Sum of ``values`` (n, padded_samples) over each centred frame: (n, n_frames), via a running sum."""
    running = np.concatenate([np.zeros((len(values), 1)), np.cumsum(values, axis=1, dtype=np.float64)], axis=1)
    starts = np.arange(n_frames) * params.hop_length
    return running[:, starts + params.n_fft] - running[:, starts]


def frame_values(segments: np.ndarray, spectrum: np.ndarray, db: np.ndarray,
                 params: DescriptorParams) -> list[np.ndarray]:
    """Per frame, each column's values (n, frames[, k]) from the segments, their STFT and dB mel spectrogram."""
    n_frames = spectrum.shape[1]
    pad = params.n_fft // 2
    y = np.asarray(segments, np.float64)
    rms = np.sqrt(_framed_sums(np.square(np.pad(y, ((0, 0), (pad, pad)))), n_frames, params) / params.n_fft)
    edged = np.pad(y, ((0, 0), (pad, pad)), mode="edge")
    sign = np.signbit(np.where(np.abs(edged) <= 1e-10, 0.0, edged))
    flips = np.concatenate([np.zeros((len(y), 1)), sign[:, 1:] != sign[:, :-1]], axis=1)
    # librosa counts a flip at each sample of a frame but its first (whose predecessor lies outside)
    zcr = (_framed_sums(flips, n_frames, params) - flips[:, np.arange(n_frames) * params.hop_length]) / params.n_fft
    pw = power(spectrum)
    chroma = pw @ chroma_basis(params.sr, params.n_fft, params.n_chroma, params.tuning)
    peak = chroma.max(axis=-1, keepdims=True)
    chroma = np.where(peak > np.finfo(np.float32).tiny, chroma / np.where(peak > 0, peak, 1), chroma)
    magnitude = np.sqrt(pw, dtype=np.float32)
    freq = np.fft.rfftfreq(params.n_fft, 1.0 / params.sr).astype(np.float32)
    mass = magnitude.sum(axis=-1, keepdims=True)
    share = np.where(mass > np.finfo(np.float32).tiny, magnitude / np.where(mass > 0, mass, 1), magnitude)
    centroid = share @ freq
    bandwidth = np.sqrt(np.einsum("ntf,ntf->nt", share, np.square(freq[None, None, :] - centroid[..., None])))
    cumulative = np.cumsum(magnitude, axis=-1)
    rolloff = freq[np.argmax(cumulative >= params.roll_percent * cumulative[..., -1:], axis=-1)]
    return [chroma, rms, centroid, bandwidth, rolloff, zcr, *np.moveaxis(cepstra(db, params.n_mfcc), -1, 0)]


def frame_sums(values: list[np.ndarray]) -> FrameSums:
    """Count, sum and sum of squares per window (axis 0) of each column's frame values."""
    v64 = [np.asarray(v, np.float64).reshape(len(v), -1) for v in values]
    return FrameSums(np.stack([np.full(len(v), v.shape[1], np.float64) for v in v64], axis=1),
                     np.stack([v.sum(axis=1) for v in v64], axis=1),
                     np.stack([np.square(v).sum(axis=1) for v in v64], axis=1))


def analyse(segments: np.ndarray, params: MfccParams = MFCC,
            descriptors: DescriptorParams = DESCRIPTORS) -> tuple[np.ndarray, FrameSums]:
    """The MFCC maps AND the descriptor frame sums of the loud segments, from one STFT per segment.

    Silent segments are dropped, as by :func:`of_segments`, whose maps these equal. Pool the sums of
    every stage's windows (:meth:`FrameSums.concatenate`, then :meth:`FrameSums.pooled`) for the track.
    """
    if (params.sr, params.n_fft, params.hop_length, params.n_mels, params.top_db) != (
            descriptors.sr, descriptors.n_fft, descriptors.hop_length, descriptors.n_mels, descriptors.top_db):
        raise ValueError("the descriptors' STFT and mel settings must be the maps' own to share one pass")
    loud = segments[loud_enough(segments, params)]
    maps, sums = [], []
    for i in range(0, len(loud), CHUNK):
        part = loud[i: i + CHUNK]
        spectrum = stft(part, params)
        db = log_mel(power(spectrum), params)
        maps.append(fit_frames(cepstra(db, params.n_mfcc), params.n_frames))
        sums.append(frame_sums(frame_values(part, spectrum, db, descriptors)))
    if not maps:
        empty = np.zeros((0, len(descriptors.columns)))
        return np.zeros((0, *params.shape), np.float32), FrameSums(empty, empty, empty)
    return np.concatenate(maps), FrameSums.concatenate(sums)


def track_descriptors(y: np.ndarray, params: DescriptorParams = DESCRIPTORS) -> np.ndarray:
    """The descriptor vector (2 * n_columns,) of a whole decoded track, every frame of it, as the CSV's rows.

    The whole track is one segment here (one dB floor, librosa's framing end to end). For long tracks,
    pool :func:`analyse`'s sums over the windows the vote heard instead (docs/descriptors.md).
    """
    y = np.asarray(y, np.float32)[None, :]
    spectrum = stft(y, params)
    db = log_mel(power(spectrum), params)
    return frame_sums(frame_values(y, spectrum, db, params)).descriptors()[0]
