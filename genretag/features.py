"""Segments and MFCCs: the one feature path shared by training and inference.

Rules (documented in the README too):

* A track is cut into non-overlapping 3-second segments (66,150 samples at 22,050 Hz).
* A trailing part shorter than 3 s is dropped: padding it would show the model a segment that is
  partly artificial, and a full track always has full segments to vote with.
* A track shorter than 3 s but at least ``min_seconds`` long becomes one segment, padded by
  repeating the audio (wrap padding), so rhythm and timbre continue instead of silence. Shorter
  audio yields no segment.
* Silent segments (RMS below ``silence_db`` dBFS) are dropped: they carry no genre. A track with
  no segment left is reported as silent by :mod:`genretag.classify`.
* Each kept segment gives librosa MFCCs with n_mfcc 13, n_fft 2048, hop 512, padded or cut to
  exactly 130 frames: shape (n_segments, 130, 13), time first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import librosa
import numpy as np


@dataclass(frozen=True)
class FeatureParams:
    """Everything that fixes the meaning of a feature map; stored in every model bundle."""

    sr: int = 22050
    segment_seconds: float = 3.0
    n_mfcc: int = 13
    n_fft: int = 2048
    hop_length: int = 512
    n_frames: int = 130
    min_seconds: float = 1.0
    silence_db: float = -60.0

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sr))

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one segment's feature map: (frames, coefficients)."""
        return (self.n_frames, self.n_mfcc)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


FEATURES = FeatureParams()
"""The parameters this code computes; a model trained on others is refused at load time."""


def segment(y: np.ndarray, params: FeatureParams = FEATURES) -> np.ndarray:
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


def loud_enough(segments: np.ndarray, params: FeatureParams = FEATURES) -> np.ndarray:
    """Boolean mask (n_segments,): True where the segment's RMS is at or above ``silence_db`` dBFS."""
    if len(segments) == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(np.square(segments, dtype=np.float64), axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-12)) >= params.silence_db


def mfcc(segments: np.ndarray, params: FeatureParams = FEATURES) -> np.ndarray:
    """MFCC maps of segments (n, segment_samples): float32 array (n, n_frames, n_mfcc)."""
    if len(segments) == 0:
        return np.zeros((0, *params.shape), dtype=np.float32)
    m = librosa.feature.mfcc(
        y=np.ascontiguousarray(segments, dtype=np.float32),
        sr=params.sr,
        n_mfcc=params.n_mfcc,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
    )  # (n, n_mfcc, frames)
    m = np.swapaxes(m, 1, 2)[:, : params.n_frames, :]
    if m.shape[1] < params.n_frames:
        m = np.pad(m, ((0, 0), (0, params.n_frames - m.shape[1]), (0, 0)))
    return np.ascontiguousarray(m, dtype=np.float32)


def extract(y: np.ndarray, params: FeatureParams = FEATURES) -> np.ndarray:
    """Mono audio to the feature maps of its non-silent segments, (n, n_frames, n_mfcc)."""
    return features_of_segments(segment(y, params), params)


def features_of_segments(segments: np.ndarray, params: FeatureParams = FEATURES) -> np.ndarray:
    """Drop silent segments, then compute the kind's maps of the rest (MFCC, or musicnn's log-mel); the step
    shared by whole tracks and seeked windows."""
    compute = musicnn_logmel if isinstance(params, MusicnnParams) else mfcc
    return compute(segments[loud_enough(segments, params)], params)


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

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


MUSICNN = MusicnnParams()


def musicnn_logmel(segments: np.ndarray, params: MusicnnParams = MUSICNN) -> np.ndarray:
    """Log-mel maps of segments (n, segment_samples) at 16 kHz: float32 (n, n_frames, n_mels), time first.

    Each segment is taken alone (centred frames, zero padding at its edges); its first 187 frames
    are musicnn's patch, the one left over is centred on the next segment's start.
    """
    if len(segments) == 0:
        return np.zeros((0, *params.shape), dtype=np.float32)
    mel = librosa.feature.melspectrogram(y=np.ascontiguousarray(segments, dtype=np.float32), sr=params.sr,
                                         n_fft=params.n_fft, hop_length=params.hop_length, n_mels=params.n_mels)
    maps = np.swapaxes(mel, 1, 2)[:, : params.n_frames].astype(np.float32)
    return np.log10(1 + params.log_scale * maps)
