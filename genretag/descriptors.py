"""Track descriptors for the descriptor network: the columns of GTZAN's ``features_30_sec.csv``, from audio.

The descriptor network was trained on that table, so at run time a track's row must mean the same:
librosa's defaults (n_fft 2048, hop 512) over the audio the vote heard, each frame-wise feature
reduced to its mean and variance. :func:`expected` is what a bundle's descriptor section must match
to be loaded.

Provisional: issue 11 step 1 moves the computation into :mod:`genretag.features` (sharing the MFCC
path's STFT); this module then only names the columns and adapts the call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SR = 22050
BASE_COLUMNS: tuple[str, ...] = (
    "chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "rolloff", "zero_crossing_rate",
    *(f"mfcc{i}" for i in range(1, 21)),
)
PARAMS: dict[str, Any] = {
    "kind": "descriptors", "sr": SR, "n_fft": 2048, "hop_length": 512, "n_mels": 128, "top_db": 80.0,
    "db_floor": "per_segment", "n_mfcc": 20, "n_chroma": 12, "tuning": 0.0, "roll_percent": 0.85,
    "columns": list(BASE_COLUMNS),
}
"""The descriptor kind's parameters as issue 11 step 1 defines them: HPSS (harmony, perceptr) and tempo
are left out (7.6 s and 0.4 s a 30-s clip for +0.003 and +0.000 CV accuracy), chroma tuning fixed at 0."""
COLUMNS: tuple[str, ...] = tuple(f"{c}_{stat}" for c in BASE_COLUMNS for stat in ("mean", "var"))


def expected() -> dict[str, Any]:
    """The descriptor parameters and columns this code computes (compared with a bundle's)."""
    return {"features": dict(PARAMS), "columns": list(COLUMNS)}


def of_windows(windows: np.ndarray) -> np.ndarray:
    """One descriptor row (n_columns,) for mono windows (n, samples) at 22,050 Hz, joined end to end."""
    import librosa

    y = np.ascontiguousarray(np.asarray(windows, np.float32).reshape(-1))
    n_fft, hop = PARAMS["n_fft"], PARAMS["hop_length"]
    spectrum = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    frames = {
        "chroma_stft": librosa.feature.chroma_stft(S=spectrum ** 2, sr=SR, tuning=PARAMS["tuning"]),
        "rms": librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop),
        "spectral_centroid": librosa.feature.spectral_centroid(S=spectrum, sr=SR),
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(S=spectrum, sr=SR),
        "rolloff": librosa.feature.spectral_rolloff(S=spectrum, sr=SR, roll_percent=PARAMS["roll_percent"]),
        "zero_crossing_rate": librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
    }
    mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=PARAMS["n_mfcc"], n_fft=n_fft, hop_length=hop)
    frames.update({f"mfcc{i}": row for i, row in enumerate(mfcc, 1)})
    return np.array([f(frames[c]) for c in BASE_COLUMNS for f in (np.mean, np.var)], np.float64)


def pooled(rows: list[np.ndarray], weights: list[int]) -> np.ndarray:
    """One row from rows of disjoint audio (e.g. the windows of each stage), weighted by their length.

    Means pool as weighted means; variances through the pooled second moment, so the result is the
    row of all that audio's frames together.
    """
    w = np.asarray(weights, np.float64)[:, None] / np.sum(weights)
    parts = np.asarray(rows, np.float64).reshape(len(rows), -1, 2)  # (n, base column, mean/var)
    mean = (w * parts[..., 0]).sum(axis=0)
    second = (w * (parts[..., 1] + np.square(parts[..., 0]))).sum(axis=0)
    return np.stack([mean, np.maximum(second - np.square(mean), 0.0)], axis=-1).reshape(-1)
