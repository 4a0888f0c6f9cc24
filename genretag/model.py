"""CNN builders, the model bundle (one versioned file), and a compiled predictor.

A bundle is a zip holding ``meta.json`` (labels, feature parameters, normalisation, version,
architecture, training summary, metrics) and ``model.weights.h5``. Loading rebuilds the named
architecture and loads the weights, then checks the feature parameters against this code's, so a
model can never be fed features it was not trained on.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genretag.features import FEATURES, FeatureParams
from genretag.fusion import RULES, Fusion

BUNDLE_FORMAT = 1
GENRES: tuple[str, ...] = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


class BundleError(Exception):
    """A model file is unreadable or does not match this code."""


def configure_tensorflow(threads: int) -> None:
    """Size TensorFlow's thread pools; must run before the first op in the process."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    except RuntimeError:  # already initialised in this process: keep what it has
        pass


# --- architectures -------------------------------------------------------------------------------


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


ARCHITECTURES: dict[str, Callable[..., Any]] = {"seed": build_seed, "gap": build_gap}
"""Builders by name; a bundle names the one that rebuilds it."""

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

    Being one model, an ensemble needs one forward pass per batch and saves as one weights file,
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


# --- the bundle ----------------------------------------------------------------------------------

DESCRIPTOR_WEIGHTS = "descriptor.weights.h5"


@dataclass
class DescriptorPart:
    """A bundle's descriptor network: its inputs (named descriptor columns), standardisation, and fusion rule.

    ``features`` are the parameters of the descriptor function that computed its training rows'
    columns; a bundle whose ``features`` or ``columns`` differ from this code's is refused.
    """

    model: Any  # keras.Model, architecture ``dense``
    layers: tuple[int, ...]
    columns: tuple[str, ...]
    features: dict[str, Any]
    mean: np.ndarray  # per column
    std: np.ndarray
    rule: str = "log"  # genretag.fusion.RULES
    weight: float = 0.5  # the CNN's share of the fused track probabilities
    training: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {"architecture": "dense", "layers": list(self.layers), "columns": list(self.columns),
                "features": self.features, "normalisation": {"mean": self.mean.tolist(), "std": self.std.tolist()},
                "file": DESCRIPTOR_WEIGHTS, "fusion": {"rule": self.rule, "weight": self.weight},
                "training": self.training}

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Descriptor rows (n, n_columns) to probabilities (n, n_labels)."""
        if len(rows) == 0:
            return np.zeros((0, self.model.output_shape[-1]), np.float32)
        z = ((np.asarray(rows, np.float64) - self.mean) / self.std).astype(np.float32)
        return np.asarray(self.model(z, training=False))


@dataclass
class ModelBundle:
    """A trained model with everything needed to use it."""

    model: Any  # keras.Model
    architecture: str
    version: str
    labels: tuple[str, ...] = GENRES
    features: FeatureParams = FEATURES
    mean: np.ndarray = field(default_factory=lambda: np.zeros(FEATURES.n_mfcc, np.float32))  # per coefficient
    std: np.ndarray = field(default_factory=lambda: np.ones(FEATURES.n_mfcc, np.float32))
    training: dict[str, Any] = field(default_factory=dict)  # data summary, settings, history
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluation figures
    descriptor: DescriptorPart | None = None  # fused with the CNN's vote when present
    temperature: float | None = None  # calibration of the track probabilities; None: uncalibrated

    def fusion(self) -> Fusion:
        """How track probabilities are made from the CNN's vote (and the descriptor network's output)."""
        part = self.descriptor
        return Fusion(part.rule if part else "log", part.weight if part else 1.0, self.temperature or 1.0)

    def meta(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.temperature is not None:
            extra["calibration"] = {"method": "temperature", "temperature": self.temperature}
        if self.descriptor is not None:
            extra["descriptor"] = self.descriptor.meta()
        return {**extra,
            "format": BUNDLE_FORMAT,
            "architecture": self.architecture,
            "version": self.version,
            "labels": list(self.labels),
            "features": self.features.to_dict(),
            "normalisation": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "training": self.training,
            "metrics": self.metrics,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bundle to ``path`` atomically (a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "model.weights.h5"
            self.model.save_weights(weights)
            partial = path.with_name(path.name + ".partial")
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("meta.json", json.dumps(self.meta(), indent=2, sort_keys=True))
                zf.write(weights, "model.weights.h5")
                if self.descriptor is not None:
                    self.descriptor.model.save_weights(Path(tmp) / DESCRIPTOR_WEIGHTS)
                    zf.write(Path(tmp) / DESCRIPTOR_WEIGHTS, DESCRIPTOR_WEIGHTS)
            os.replace(partial, path)
        return path

    def normalise(self, features: np.ndarray) -> np.ndarray:
        """(n, frames, n_mfcc) to the standardised (n, frames, n_mfcc, 1) the network takes."""
        x = (features - self.mean) / self.std
        return x[..., None].astype(np.float32, copy=False)


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a bundle, without loading TensorFlow."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("meta.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not a genretag model bundle ({exc})") from None


def load_bundle(
    path: str | os.PathLike[str], expected: FeatureParams = FEATURES, descriptors: dict[str, Any] | None = None
) -> ModelBundle:
    """Load a bundle, refusing one whose feature parameters differ from ``expected``.

    A descriptor section is refused too when its descriptor parameters differ from ``descriptors``
    (default: this code's, :func:`genretag.descriptors.expected`).
    """
    meta = read_meta(path)
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {meta.get('format')!r}, this code reads {BUNDLE_FORMAT}")
    stored = meta["features"]
    if stored != expected.to_dict():
        diff = {k: (stored.get(k), v) for k, v in expected.to_dict().items() if stored.get(k) != v}
        raise BundleError(f"{path}: feature parameters differ from this code's (stored, expected): {diff}")
    params = FeatureParams(**stored)
    model = build(meta["architecture"], params.shape, len(meta["labels"]))
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory() as tmp:
        zf.extract("model.weights.h5", tmp)
        model.load_weights(Path(tmp) / "model.weights.h5")
    norm = meta["normalisation"]
    calibration = meta.get("calibration")
    if calibration is not None and calibration.get("method") != "temperature":
        raise BundleError(f"{path}: calibration method {calibration.get('method')!r}, this code applies 'temperature'")
    return ModelBundle(
        model=model,
        architecture=meta["architecture"],
        version=meta["version"],
        labels=tuple(meta["labels"]),
        features=params,
        mean=np.asarray(norm["mean"], np.float32),
        std=np.asarray(norm["std"], np.float32),
        training=meta.get("training", {}),
        metrics=meta.get("metrics", {}),
        descriptor=_load_descriptor(path, meta, descriptors),
        temperature=calibration["temperature"] if calibration else None,
    )


def _load_descriptor(path: str | os.PathLike[str], meta: dict[str, Any], descriptors: dict[str, Any] | None
                     ) -> DescriptorPart | None:
    """The descriptor section of ``meta`` with its network, or ``None``; refuses other descriptor parameters."""
    section = meta.get("descriptor")
    if section is None:
        return None
    from genretag import descriptors as code

    expected = code.expected() if descriptors is None else descriptors
    stored = {"features": section["features"], "columns": section["columns"]}
    if stored != expected:
        diff = {k: (stored.get(k), v) for k, v in expected.items() if stored.get(k) != v}
        raise BundleError(f"{path}: descriptor parameters differ from this code's (stored, expected): {diff}")
    norm = section["normalisation"]
    model = build_dense(len(section["columns"]), len(meta["labels"]), section["layers"])
    with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory() as tmp:
        zf.extract(section["file"], tmp)
        model.load_weights(Path(tmp) / section["file"])
    fusion = section["fusion"]
    if fusion["rule"] not in RULES:
        raise BundleError(f"{path}: fusion rule {fusion['rule']!r}, this code knows {', '.join(RULES)}")
    return DescriptorPart(model, tuple(section["layers"]), tuple(section["columns"]), section["features"],
                          np.asarray(norm["mean"], np.float64), np.asarray(norm["std"], np.float64),
                          fusion["rule"], float(fusion["weight"]), section.get("training", {}))


class Predictor:
    """Segment probabilities through one compiled forward pass per batch (never ``model.predict``).

    ``model(x, training=False)`` inside a ``tf.function`` with a fixed input signature traces
    once, so repeated calls neither retrace nor grow memory the way ``predict`` in a loop does.
    """

    def __init__(self, bundle: ModelBundle, batch_size: int = 512) -> None:
        import tensorflow as tf

        self.bundle = bundle
        self.batch_size = batch_size
        spec = tf.TensorSpec((None, *bundle.features.shape, 1), tf.float32)
        self._forward = tf.function(lambda x: bundle.model(x, training=False), input_signature=[spec])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(n, frames, n_mfcc) MFCC maps to (n, n_labels) probabilities."""
        if len(features) == 0:
            return np.zeros((0, len(self.bundle.labels)), np.float32)
        x = self.bundle.normalise(features)
        parts = [self._forward(x[i: i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)]
        return np.concatenate(parts)
