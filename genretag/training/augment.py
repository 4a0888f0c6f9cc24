"""Augmentation of normalised MFCC maps, for training segments only.

Each function takes a batch ``(n, frames, n_mfcc)`` of standardised maps (0 is the training mean)
and returns a new array of the same shape; masks set values to 0, i.e. to the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentParams:
    """How strongly to perturb; zero disables a step."""

    max_roll: int = 130  # frames a map may be rolled in time (circular shift)
    time_masks: int = 2
    time_mask_width: int = 15  # frames, at most, per mask
    freq_masks: int = 1
    freq_mask_width: int = 2  # coefficients, at most, per mask
    noise_std: float = 0.05  # in standard deviations of each coefficient


def roll_time(x: np.ndarray, rng: np.random.Generator, max_roll: int) -> np.ndarray:
    """Circularly shift each map in time by up to ``max_roll`` frames either way."""
    if max_roll <= 0:
        return x.copy()
    n, frames = x.shape[:2]
    shifts = rng.integers(-max_roll, max_roll + 1, size=n)
    idx = (np.arange(frames)[None, :] - shifts[:, None]) % frames
    return np.take_along_axis(x, idx[:, :, None], axis=1)


def mask(x: np.ndarray, rng: np.random.Generator, axis: int, count: int, width: int) -> np.ndarray:
    """SpecAugment-style masks: ``count`` bands of up to ``width`` along ``axis`` (1 time, 2 coefficients) set to 0."""
    out = x.copy()
    if count <= 0 or width <= 0:
        return out
    n, size = x.shape[0], x.shape[axis]
    positions = np.arange(size)[None, :]
    for _ in range(count):
        w = rng.integers(0, width + 1, size=n)
        start = rng.integers(0, np.maximum(size - w, 0) + 1)
        band = (positions >= start[:, None]) & (positions < (start + w)[:, None])  # (n, size)
        out = np.where(band[:, :, None] if axis == 1 else band[:, None, :], np.zeros((), x.dtype), out)
    return out


def add_noise(x: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    if std <= 0:
        return x.copy()
    return x + rng.normal(0.0, std, size=x.shape).astype(x.dtype)


def augment(x: np.ndarray, rng: np.random.Generator, params: AugmentParams = AugmentParams()) -> np.ndarray:
    """Roll, mask in time and frequency, and add noise: a new batch of the same shape and dtype."""
    x = roll_time(x, rng, params.max_roll)
    x = mask(x, rng, 1, params.time_masks, params.time_mask_width)
    x = mask(x, rng, 2, params.freq_masks, params.freq_mask_width)
    return add_noise(x, rng, params.noise_std).astype(x.dtype, copy=False)


def mixup(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Blend random pairs of maps and their one-hot targets ``y`` (n, classes) with Beta(alpha, alpha) weights."""
    if alpha <= 0:
        return x, y
    lam = rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    lam = np.maximum(lam, 1 - lam)  # keep the first item dominant
    order = rng.permutation(len(x))
    xm = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[order]
    ym = lam[:, None] * y + (1 - lam[:, None]) * y[order]
    return xm.astype(x.dtype, copy=False), ym.astype(y.dtype, copy=False)
