"""Track probabilities from the CNN's vote and the descriptor network, calibrated, and the uncertain call.

Pure numpy on (n, n_labels) probability arrays, used at run time (classify) and by the training
code that chooses the rule, the weight and the temperature on out-of-fold predictions
(:mod:`genretag.training.calibrate`), so both apply the very same arithmetic.

Rules: ``"linear"`` averages the two probability vectors, ``"log"`` averages their logarithms (a
geometric mean, renormalised), so a genre one model rules out stays low. ``weight`` is the CNN's
share. Calibration is temperature scaling of the fused log-probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

RULES = ("linear", "log")
FLOOR = 1e-7  # smallest probability a log takes: a model's hard zero must not veto for ever


@dataclass(frozen=True)
class Fusion:
    """How a bundle combines its two networks and calibrates the result; stored in ``meta.json``."""

    rule: str = "log"
    weight: float = 0.5  # the CNN's share; 1.0 is the CNN alone, 0.0 the descriptor network alone
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown fusion rule {self.rule!r}; known: {', '.join(RULES)}")

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)

    def __call__(self, cnn: np.ndarray, descriptor: np.ndarray | None) -> np.ndarray:
        """Calibrated track probabilities (n, n_labels); without a descriptor output, the CNN's, calibrated."""
        cnn = np.atleast_2d(np.asarray(cnn, np.float64))
        if descriptor is None:
            logp = np.log(np.maximum(cnn, FLOOR))
        else:
            logp = combine(cnn, np.atleast_2d(np.asarray(descriptor, np.float64)), self.rule, self.weight)
        return softmax(logp / self.temperature)


def combine(cnn: np.ndarray, descriptor: np.ndarray, rule: str, weight: float) -> np.ndarray:
    """Uncalibrated fused log-probabilities (n, n_labels), up to a constant per row."""
    if rule == "linear":
        return np.log(np.maximum(weight * cnn + (1 - weight) * descriptor, FLOOR))
    return weight * np.log(np.maximum(cnn, FLOOR)) + (1 - weight) * np.log(np.maximum(descriptor, FLOOR))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Call:
    """The genre stored for a track, how sure it is, and the runner-up when the two are close."""

    genre: str
    confidence: float  # calibrated probability of ``genre``
    uncertain: bool  # ``confidence`` below the threshold
    runner_up: str | None  # the second genre, when its probability is at least ``close`` times the first's

    def label(self) -> str:
        """``jazz``, ``uncertain: jazz`` or ``uncertain: jazz or classical``."""
        if not self.uncertain:
            return self.genre
        return f"uncertain: {self.genre}" + (f" or {self.runner_up}" if self.runner_up else "")


def call(probabilities: np.ndarray, labels: Sequence[str], min_confidence: float, close: float) -> Call:
    """The decision for one track's calibrated probabilities (n_labels,)."""
    order = np.argsort(probabilities)[::-1]
    first, second = float(probabilities[order[0]]), float(probabilities[order[1]])
    runner = labels[order[1]] if second >= close * first else None
    return Call(labels[order[0]], first, first < min_confidence, runner)
