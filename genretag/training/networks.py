"""The Keras networks: builders by architecture name, ensembles, and a compiled forward pass for training.

Inference never runs these: a saved bundle carries the LiteRT export (:mod:`genretag.training.export`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from genretag.bundle import Bundle, BundleError
from genretag.training.musicnn import build_classifier


def configure_tensorflow(threads: int) -> None:
    """Size TensorFlow's thread pools; must run before the first op in the process."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:  # already initialised in this process: keep what it has
        pass


def build_seed(input_shape: tuple[int, int], n_classes: int, name: str = "seed") -> Any:
    """The reference CNN from the design notes (three conv blocks, Dense 128, dropout 0.4)."""
    from tensorflow import keras
    from tensorflow.keras import layers, regularizers

    l2 = regularizers.l2(0.001)
    inputs = keras.Input(shape=(*input_shape, 1))
    x = inputs
    for filters, kernel, pool in ((32, 3, 3), (64, 3, 3), (128, 2, 2)):
        x = layers.Conv2D(filters, kernel, activation="relu", kernel_regularizer=l2)(x)
        x = layers.MaxPooling2D(pool, strides=2, padding="same")(x)
        x = layers.BatchNormalization()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", kernel_regularizer=l2)(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(n_classes, activation="softmax", kernel_regularizer=l2)(x)
    return keras.Model(inputs, outputs, name=name)


def build_gap(input_shape: tuple[int, int], n_classes: int, name: str = "gap") -> Any:
    """Ours: four conv blocks (conv, batch norm, ReLU, pool), then global average pooling instead of Flatten.

    Averaging over time and coefficients makes the head shift-invariant and small (about 240k
    weights), which suits a few thousand training segments better than the seed's dense layer.
    """
    from tensorflow import keras
    from tensorflow.keras import layers, regularizers

    l2 = regularizers.l2(1e-4)
    inputs = keras.Input(shape=(*input_shape, 1))
    x = inputs
    for filters in (32, 64, 128, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=l2)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_classes, activation="softmax", kernel_regularizer=l2)(x)
    return keras.Model(inputs, outputs, name=name)


def build_dense(n_inputs: int, n_classes: int, layers_: Sequence[int] = (512, 256, 128, 64), dropout: float = 0.2,
                l2: float = 1e-4) -> Any:
    """The seed's descriptor NN (architecture ``dense``): ReLU dense layers, each followed by dropout, then a softmax.

    It reads one row of track descriptors (standardised), not a feature map; a bundle holds it beside its CNN.
    """
    from tensorflow import keras
    from tensorflow.keras import layers, regularizers

    inputs = keras.Input(shape=(n_inputs,))
    x = inputs
    for units in layers_:
        x = layers.Dense(units, activation="relu", kernel_regularizer=regularizers.l2(l2))(x)
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", kernel_regularizer=regularizers.l2(l2))(x)
    return keras.Model(inputs, outputs, name="dense")


ARCHITECTURES: dict[str, Callable[..., Any]] = {"seed": build_seed, "gap": build_gap, "musicnn": build_classifier}
"""Builders by name; a bundle names the one that rebuilds it. ``musicnn`` (the pretrained family) is trained by
:mod:`genretag.training.pretrained`, not by ``fit``."""

LEARNING_RATE_SCALE: dict[str, float] = {"seed": 1.0, "gap": 2.0}
"""Each architecture trains at the recipe's learning rate times this: ``gap``, batch-normalised after every
convolution and without a large dense layer, learns best at twice the seed's rate (docs/evaluation.md)."""

ENSEMBLE_JOIN = "+"
"""``"seed+gap"`` names an ensemble: the mean of its members' probabilities."""


def members(architecture: str) -> list[str]:
    """The single architectures an architecture name is made of (one, unless it is an ensemble)."""
    names = architecture.split(ENSEMBLE_JOIN)
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown:
        raise BundleError(f"unknown architecture {unknown[0]!r}; known: {', '.join(ARCHITECTURES)}, "
                          f"or several joined by {ENSEMBLE_JOIN!r} for an ensemble")
    return names


def build(architecture: str, input_shape: tuple[int, int], n_classes: int) -> Any:
    """The named network; an ensemble is one Keras model that averages its members' outputs.

    Being one model, an ensemble needs one forward pass per batch and exports as one network,
    so the predictor and the bundle treat it like any single network.
    """
    names = members(architecture)
    if len(names) == 1:
        return ARCHITECTURES[names[0]](input_shape, n_classes)
    from tensorflow import keras
    from tensorflow.keras import layers

    nets = [ARCHITECTURES[n](input_shape, n_classes, name=f"member{i}_{n}") for i, n in enumerate(names)]
    inputs = keras.Input(shape=(*input_shape, 1))
    outputs = layers.Average()([net(inputs) for net in nets])
    return keras.Model(inputs, outputs, name="ensemble")


def ensemble_of(nets: list[Any], architecture: str, input_shape: tuple[int, int], n_classes: int) -> Any:
    """The ensemble ``architecture`` holding the weights of ``nets`` (trained members, in order)."""
    from tensorflow import keras

    model = build(architecture, input_shape, n_classes)
    for member, net in zip([la for la in model.layers if isinstance(la, keras.Model)], nets, strict=True):
        member.set_weights(net.get_weights())
    return model


class KerasPredictor:
    """Segment probabilities of an in-memory Keras network (cross-validation folds, export checks).

    ``model(x, training=False)`` inside a ``tf.function`` with a fixed input signature traces
    once, so repeated calls neither retrace nor grow memory the way ``predict`` in a loop does.
    """

    def __init__(self, model: Any, bundle: Bundle, batch_size: int = 512) -> None:
        import tensorflow as tf

        self.bundle = bundle
        self.batch_size = batch_size
        spec = tf.TensorSpec((None, *bundle.features.shape, 1), tf.float32)
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def __call__(self, maps: np.ndarray) -> np.ndarray:
        """(n, frames, n_mfcc) MFCC maps to (n, n_labels) probabilities."""
        if len(maps) == 0:
            return np.zeros((0, len(self.bundle.labels)), np.float32)
        x = self.bundle.normalise(maps)
        parts = [self._forward(x[i: i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)]
        return np.concatenate(parts)
