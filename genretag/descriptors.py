"""Track descriptors for the descriptor network: the rows it reads, from the audio the vote heard.

The network was trained on GTZAN's ``features_30_sec.csv``; :mod:`genretag.features` computes the
same 52 columns (``features.DESCRIPTORS``) on the MFCC path's STFT and mel spectrogram. This module
names what a bundle's descriptor section must match (:func:`expected`) and gives one row per track
from windows, or pools the rows of several stages (:func:`pooled`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genretag import features

SR = features.DESCRIPTORS.sr
COLUMNS: tuple[str, ...] = tuple(features.DESCRIPTORS.names)
CHUNK = 8  # windows per STFT batch, as the maps take them


def expected() -> dict[str, Any]:
    """The descriptor parameters and columns this code computes (compared with a bundle's)."""
    return {"features": features.DESCRIPTORS.to_dict(), "columns": list(COLUMNS)}


def of_windows(windows: np.ndarray) -> np.ndarray:
    """One descriptor row (n_columns,) over every frame of mono windows (n, samples) at 22,050 Hz.

    Each window is framed on its own, with its own dB floor, as the maps are; a whole track passed as
    one window gives :func:`genretag.features.track_descriptors`.
    """
    params = features.DESCRIPTORS
    sums = []
    for i in range(0, len(windows), CHUNK):
        part = np.asarray(windows[i: i + CHUNK], np.float32)
        spectrum = features.stft(part, params)
        db = features.log_mel(features.power(spectrum), params)
        sums.append(features.frame_sums(features.frame_values(part, spectrum, db, params)))
    return features.FrameSums.concatenate(sums).pooled().descriptors()[0]


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
