"""The model bundle (one versioned file) and the LiteRT predictor that runs it, without TensorFlow.

A bundle, format 2, is a zip holding ``meta.json`` (labels, feature parameters, normalisation,
version, architecture, optional calibration and descriptor, training summary, metrics),
``model.tflite`` (the network exported for LiteRT: what inference runs) and ``model.weights.h5``
(the Keras weights, read only by training: fine-tuning, and the LiteRT-against-Keras test).
Loading checks the feature parameters against this code's, so a model can never be fed features
it was not trained on. ``genretag.training.export`` writes bundles and converts format 1 ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genretag import stderr
from genretag.bundlemeta import BundleError, read_meta  # re-exported: the names every caller imports from here
from genretag.features import FEATURES, FeatureParams, registered
from genretag.fusion import RULES, Fusion

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 2
TFLITE = "model.tflite"
KERAS_WEIGHTS = "model.weights.h5"
DESCRIPTOR_TFLITE = "descriptor.tflite"  # the descriptor network's export, named by meta's descriptor.file
DESCRIPTOR_WEIGHTS = "descriptor.weights.h5"
GENRES: tuple[str, ...] = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


# --- feature parameters: the one place that maps them to and from meta.json ----------------------

def features_meta(params: FeatureParams) -> dict[str, Any]:
    """The ``features`` entry of meta.json: the kind of feature function and its parameters."""
    return params.to_dict()


def features_of_meta(stored: dict[str, Any], source: object) -> FeatureParams:
    """This code's parameters of the kind a bundle's ``features`` entry names; :class:`BundleError` if they differ."""
    try:
        params = registered(stored.get("kind", "mfcc"))
    except KeyError as exc:
        raise BundleError(f"{source}: {exc.args[0]}") from None
    expected = features_meta(params)
    if stored != expected:
        diff = {k: (stored.get(k), expected.get(k)) for k in expected.keys() | stored.keys()
                if stored.get(k) != expected.get(k)}
        raise BundleError(f"{source}: feature parameters differ from this code's (stored, expected): {diff}")
    return params


def descriptor_of_meta(section: dict[str, Any], files: dict[str, bytes], source: object) -> dict[str, Any]:
    """A bundle's ``descriptor`` section, checked: this code's descriptor parameters and columns, a known
    fusion rule, and its export present; :class:`BundleError` otherwise."""
    from genretag import descriptors

    expected = descriptors.expected()
    stored = {"features": section.get("features"), "columns": section.get("columns")}
    if stored != expected:
        diff = {k: (stored[k], v) for k, v in expected.items() if stored[k] != v}
        raise BundleError(f"{source}: descriptor parameters differ from this code's (stored, expected): {diff}")
    if section["fusion"]["rule"] not in RULES:
        raise BundleError(f"{source}: fusion rule {section['fusion']['rule']!r}, this code knows {', '.join(RULES)}")
    if section["file"] not in files:
        raise BundleError(f"{source}: no {section['file']} (the descriptor network's export) in the bundle")
    return section


# --- the bundle ----------------------------------------------------------------------------------


@dataclass
class Bundle:
    """A trained model with everything needed to use it; ``files`` holds the zip's members but meta.json."""

    architecture: str
    version: str
    labels: tuple[str, ...] = GENRES
    features: FeatureParams = FEATURES
    mean: np.ndarray = field(default_factory=lambda: np.zeros(FEATURES.shape[-1], np.float32))  # per coefficient
    std: np.ndarray = field(default_factory=lambda: np.ones(FEATURES.shape[-1], np.float32))
    training: dict[str, Any] = field(default_factory=dict)  # data summary, settings, history
    metrics: dict[str, Any] = field(default_factory=dict)  # evaluation figures
    calibration: dict[str, Any] | None = None  # e.g. {"method": "temperature", "temperature": 1.3}
    descriptor: dict[str, Any] | None = None  # the descriptor network's features, normalisation, file, fusion
    files: dict[str, bytes] = field(default_factory=dict)  # TFLITE (required to save), KERAS_WEIGHTS, ...

    @classmethod
    def from_meta(cls, meta: dict[str, Any], features: FeatureParams, files: dict[str, bytes]) -> Bundle:
        """The bundle that ``meta`` (a checked meta.json), its feature parameters and ``files`` describe."""
        norm = meta["normalisation"]
        return cls(
            architecture=meta["architecture"],
            version=meta["version"],
            labels=tuple(meta["labels"]),
            features=features,
            mean=np.asarray(norm["mean"], np.float32),
            std=np.asarray(norm["std"], np.float32),
            training=meta.get("training", {}),
            metrics=meta.get("metrics", {}),
            calibration=meta.get("calibration"),
            descriptor=meta.get("descriptor"),
            files=files,
        )

    def meta(self) -> dict[str, Any]:
        meta = {
            "format": BUNDLE_FORMAT,
            "architecture": self.architecture,
            "version": self.version,
            "labels": list(self.labels),
            "features": features_meta(self.features),
            "normalisation": {"mean": self.mean.tolist(), "std": self.std.tolist()},
            "training": self.training,
            "metrics": self.metrics,
        }
        optional = {"calibration": self.calibration, "descriptor": self.descriptor}
        return {**meta, **{k: v for k, v in optional.items() if v is not None}}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bundle to ``path`` atomically (a temporary file, then a rename)."""
        if TFLITE not in self.files:
            raise BundleError(f"{path}: a bundle needs its {TFLITE} export (genretag.training.export)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("meta.json", json.dumps(self.meta(), indent=2, sort_keys=True))
            for name, data in sorted(self.files.items()):
                zf.writestr(name, data)
        os.replace(partial, path)
        return path

    def normalise(self, maps: np.ndarray) -> np.ndarray:
        """(n, frames, n_mfcc) to the standardised (n, frames, n_mfcc, 1) the network takes."""
        x = (maps - self.mean) / self.std
        return x[..., None].astype(np.float32, copy=False)

    def predictor(self, threads: int) -> Predictor:
        """A LiteRT interpreter for this bundle; build one per process and keep it."""
        return Predictor(self, threads)

    def descriptor_predictor(self, threads: int) -> DescriptorPredictor:
        """A LiteRT interpreter for the bundle's descriptor network (a bundle with a ``descriptor`` section)."""
        return DescriptorPredictor(self, threads)

    def fusion(self) -> Fusion:
        """How track probabilities come from the CNN's vote (and the descriptor network's output), calibrated.

        Without a descriptor network the CNN's vote alone (weight 1); without calibration, temperature 1.
        """
        fusion = (self.descriptor or {}).get("fusion", {"rule": "log", "weight": 1.0})
        return Fusion(fusion["rule"], float(fusion["weight"]), float((self.calibration or {}).get("temperature", 1.0)))


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load a format-2 bundle, refusing one whose feature parameters differ from this code's."""
    meta = read_meta(path)
    if meta.get("format") != BUNDLE_FORMAT:
        hint = " (convert it: python -m genretag.training.export OLD NEW)" if meta.get("format") == 1 else ""
        raise BundleError(f"{path}: bundle format {meta.get('format')!r}, this code reads {BUNDLE_FORMAT}{hint}")
    params = features_of_meta(meta["features"], path)
    with zipfile.ZipFile(path) as zf:
        files = {name: zf.read(name) for name in zf.namelist() if name != "meta.json"}
    if TFLITE not in files:
        raise BundleError(f"{path}: no {TFLITE} in the bundle")
    calibration = meta.get("calibration")
    if calibration is not None and calibration.get("method") != "temperature":
        raise BundleError(f"{path}: calibration method {calibration.get('method')!r}, this code applies 'temperature'")
    if "descriptor" in meta:
        descriptor_of_meta(meta["descriptor"], files, path)
    return Bundle.from_meta(meta, params, files)


# --- the predictor -------------------------------------------------------------------------------


@contextlib.contextmanager
def _banner_to_log() -> Iterator[None]:
    """Send what LiteRT's C++ side writes to stderr meanwhile to the debug log, not the terminal.

    LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." once per process when
    the first interpreter allocates, and offers no switch for it; anything it writes is kept at
    debug level, a line that is not INFO at warning level.
    """
    lines: list[str] = []
    try:
        with stderr.captured() as lines:
            yield
    finally:
        for line in lines:
            log.log(logging.DEBUG if line.startswith("INFO:") else logging.WARNING, "LiteRT: %s", line)


class Predictor:
    """Segment probabilities from the bundle's LiteRT export (XNNPACK), one interpreter per process.

    The interpreter is allocated once for one segment and runs a batch segment by segment, so no
    call ever resizes or re-allocates it, and nothing is spent on padding: the cost per segment does
    not fall with the batch size for either shipped network (XNNPACK, 1 or 2 threads), and with the
    chunks of 8 used before, a 30-s clip's 10 segments ran as 16, a third of musicnn's inference
    thrown away (bench/README.md, 5 Dec, cut 1).
    """

    def __init__(self, bundle: Bundle, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.bundle = bundle
        self._interpreter = Interpreter(model_content=bundle.files[TFLITE], num_threads=threads)
        (inp,) = self._interpreter.get_input_details()
        (out,) = self._interpreter.get_output_details()
        want = (*bundle.features.shape, 1)
        if tuple(inp["shape"][1:]) != want or out["shape"][-1] != len(bundle.labels):
            raise BundleError(f"bundle {bundle.version}: its network takes {tuple(inp['shape'][1:])} and gives "
                              f"{out['shape'][-1]} outputs; the features give {want} and it has {len(bundle.labels)} labels")
        self._input, self._output = inp["index"], out["index"]
        self._interpreter.resize_tensor_input(self._input, (1, *want), strict=True)
        with _banner_to_log():
            self._interpreter.allocate_tensors()

    def __call__(self, maps: np.ndarray) -> np.ndarray:
        """(n, frames, n_mfcc) MFCC maps to (n, n_labels) probabilities."""
        x = self.bundle.normalise(maps)
        probs = np.empty((len(x), len(self.bundle.labels)), np.float32)
        for i in range(len(x)):
            self._interpreter.set_tensor(self._input, x[i: i + 1])
            self._interpreter.invoke()
            probs[i] = self._interpreter.get_tensor(self._output)[0]
        return probs


class DescriptorPredictor:
    """The descriptor network's probabilities from its LiteRT export: standardised rows in, one at a time.

    One row per track, so the interpreter is allocated once for a batch of one.
    """

    def __init__(self, bundle: Bundle, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        section = bundle.descriptor
        self.mean = np.asarray(section["normalisation"]["mean"], np.float64)
        self.std = np.asarray(section["normalisation"]["std"], np.float64)
        self._interpreter = Interpreter(model_content=bundle.files[section["file"]], num_threads=threads)
        (inp,) = self._interpreter.get_input_details()
        (out,) = self._interpreter.get_output_details()
        if inp["shape"][-1] != len(self.mean) or out["shape"][-1] != len(bundle.labels):
            raise BundleError(f"bundle {bundle.version}: its descriptor network takes {inp['shape'][-1]} columns and "
                              f"gives {out['shape'][-1]}; the section has {len(self.mean)} and {len(bundle.labels)} labels")
        self._input, self._output = inp["index"], out["index"]
        self._interpreter.resize_tensor_input(self._input, (1, len(self.mean)), strict=True)
        with _banner_to_log():
            self._interpreter.allocate_tensors()

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Descriptor rows (n, n_columns), in the section's column order, to probabilities (n, n_labels)."""
        z = ((np.asarray(rows, np.float64) - self.mean) / self.std).astype(np.float32)
        out = []
        for row in z:
            self._interpreter.set_tensor(self._input, row[None, :])
            self._interpreter.invoke()
            out.append(self._interpreter.get_tensor(self._output)[0].copy())
        return np.array(out, np.float32).reshape(len(z), -1)
