"""Track descriptors for the descriptor network: the columns of GTZAN's ``features_30_sec.csv``, from audio.

The descriptor network was trained on that table, so at run time a track's row must mean the same:
librosa's defaults (n_fft 2048, hop 512) over the audio the vote heard, each frame-wise feature
reduced to its mean and variance, HPSS waveforms likewise, and the tempo. :func:`expected` is what
a bundle's descriptor section must match to be loaded.

Provisional: issue 11 step 1 moves the computation into :mod:`genretag.features` (sharing the MFCC
path's STFT); this module then only names the columns and adapts the call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SR = 22050
PARAMS: dict[str, Any] = {"kind": "descriptors", "sr": SR, "n_fft": 2048, "hop_length": 512, "n_mfcc": 20,
                          "source": "librosa defaults, mean and variance over frames"}
COLUMNS: tuple[str, ...] = (
    *(f"{name}_{stat}" for name in ("chroma_stft", "rms", "spectral_centroid", "spectral_bandwidth", "rolloff",
                                    "zero_crossing_rate", "harmony", "perceptr") for stat in ("mean", "var")),
    "tempo",
    *(f"mfcc{i}_{stat}" for i in range(1, 21) for stat in ("mean", "var")),
)


def expected() -> dict[str, Any]:
    """The descriptor parameters and columns this code computes (compared with a bundle's)."""
    return {"features": dict(PARAMS), "columns": list(COLUMNS)}


def of_windows(windows: np.ndarray) -> np.ndarray:
    """One descriptor row (n_columns,) for mono windows (n, samples) at 22,050 Hz, joined end to end."""
    import librosa

    y = np.ascontiguousarray(np.asarray(windows, np.float32).reshape(-1))
    n_fft, hop = PARAMS["n_fft"], PARAMS["hop_length"]
    spectrum = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    harmonic, percussive = librosa.effects.hpss(y)
    frames = {
        "chroma_stft": librosa.feature.chroma_stft(S=spectrum ** 2, sr=SR),
        "rms": librosa.feature.rms(S=spectrum, frame_length=n_fft, hop_length=hop),
        "spectral_centroid": librosa.feature.spectral_centroid(S=spectrum, sr=SR),
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(S=spectrum, sr=SR),
        "rolloff": librosa.feature.spectral_rolloff(S=spectrum, sr=SR),
        "zero_crossing_rate": librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
        "harmony": harmonic,
        "perceptr": percussive,
    }
    mfcc = librosa.feature.mfcc(y=y, sr=SR, n_mfcc=PARAMS["n_mfcc"], n_fft=n_fft, hop_length=hop)
    values: dict[str, float] = {}
    for name, f in frames.items():
        values[f"{name}_mean"], values[f"{name}_var"] = float(np.mean(f)), float(np.var(f))
    values["tempo"] = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=SR)[0])[0])
    for i, row in enumerate(mfcc, 1):
        values[f"mfcc{i}_mean"], values[f"mfcc{i}_var"] = float(np.mean(row)), float(np.var(row))
    return np.array([values[c] for c in COLUMNS], np.float64)
