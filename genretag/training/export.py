"""Keras network to bundle: the LiteRT export, the saved format-2 file, and the converter from format 1.

Every bundle carries ``model.tflite`` (what inference runs, through :class:`genretag.bundle.Predictor`)
beside ``model.weights.h5`` (what training rebuilds, :func:`keras_model`). An export is checked
against Keras before it is saved, so a bundle whose two copies disagree is never written.

    python -m genretag.training.export OLD.genretag NEW.genretag   # format 1 to 2, or a format-2 bundle exported anew
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from genretag.bundle import (
    DESCRIPTOR_WEIGHTS, KERAS_WEIGHTS, TFLITE, Bundle, BundleError, DescriptorPredictor, Predictor, read_meta,
)
from genretag.features import params_of
from genretag.training.networks import KerasPredictor, build

EXPORT_TOLERANCE = 1e-5
"""Largest difference in any probability between the LiteRT export and Keras that an export may show."""


def to_tflite(model: Any) -> bytes:
    """The network as a LiteRT flatbuffer (float32, batch dimension left open)."""
    import tensorflow as tf

    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints every captured variable
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def keras_weights(model: Any) -> bytes:
    """The network's weights as the bytes of a Keras ``.weights.h5`` file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / KERAS_WEIGHTS
        model.save_weights(path)
        return path.read_bytes()


def exported(model: Any, bundle: Bundle) -> Bundle:
    """``bundle`` holding ``model``'s LiteRT export and Keras weights; :class:`BundleError` if they disagree."""
    out = dataclasses.replace(bundle, files={**bundle.files, TFLITE: to_tflite(model), KERAS_WEIGHTS: keras_weights(model)})
    maps = out.mean + out.std * np.random.default_rng(0).normal(size=(12, *out.features.shape)).astype(np.float32)
    diff = float(np.abs(Predictor(out, threads=1)(maps) - KerasPredictor(model, out)(maps)).max())
    if diff > EXPORT_TOLERANCE:
        raise BundleError(f"bundle {out.version}: the LiteRT export differs from Keras by {diff:.2g} "
                          f"(at most {EXPORT_TOLERANCE:g} allowed)")
    return out


def with_descriptor(bundle: Bundle, model: Any, section: dict[str, Any]) -> Bundle:
    """``bundle`` plus a descriptor network: its LiteRT export and Keras weights, and its ``descriptor`` section.

    Checked like the CNN's export: LiteRT and Keras must agree within :data:`EXPORT_TOLERANCE`.
    """
    files = {**bundle.files, section["file"]: to_tflite(model), DESCRIPTOR_WEIGHTS: keras_weights(model)}
    out = dataclasses.replace(bundle, descriptor=section, files=files)
    norm = section["normalisation"]
    rows = np.asarray(norm["mean"]) + np.asarray(norm["std"]) * np.random.default_rng(0).normal(size=(12, len(norm["mean"])))
    keras = np.asarray(model(((rows - norm["mean"]) / np.asarray(norm["std"])).astype(np.float32), training=False))
    diff = float(np.abs(DescriptorPredictor(out, threads=1)(rows) - keras).max())
    if diff > EXPORT_TOLERANCE:
        raise BundleError(f"bundle {out.version}: the descriptor network's LiteRT export differs from Keras by "
                          f"{diff:.2g} (at most {EXPORT_TOLERANCE:g} allowed)")
    return out


def save(model: Any, bundle: Bundle, path: str | os.PathLike[str]) -> Path:
    """Export ``model`` into ``bundle`` and write it to ``path`` (atomically)."""
    return exported(model, bundle).save(path)


def keras_model(bundle: Bundle) -> Any:
    """The bundle's network rebuilt in Keras from its weights (fine-tuning, comparisons)."""
    if KERAS_WEIGHTS not in bundle.files:
        raise BundleError(f"bundle {bundle.version}: no {KERAS_WEIGHTS}, so no Keras network to rebuild")
    model = build(bundle.architecture, bundle.features.shape, len(bundle.labels))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / KERAS_WEIGHTS
        path.write_bytes(bundle.files[KERAS_WEIGHTS])
        model.load_weights(path)
    return model


def convert(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Export a bundle's Keras weights anew with this code's builders, keeping its version: a format-1
    bundle (meta.json and Keras weights) becomes format 2, a format-2 one gets this code's LiteRT graph
    (its descriptor network's export is kept as it is).

    The network and its weights are unchanged, so its predictions are too (within the export
    tolerance, checked): the version, which names them in the database, stays.
    """
    from genretag.bundle import load_bundle

    meta = read_meta(src)
    if meta.get("format") == 2:
        bundle = load_bundle(src)
    elif meta.get("format") == 1:
        try:
            params = params_of(meta["features"])
        except (TypeError, KeyError) as exc:
            raise BundleError(f"{src}: feature parameters this code does not have ({exc})") from None
        with zipfile.ZipFile(src) as zf:
            bundle = Bundle.from_meta(meta, params, {KERAS_WEIGHTS: zf.read(KERAS_WEIGHTS)})
    else:
        raise BundleError(f"{src}: bundle format {meta.get('format')!r}, not 1 or 2")
    return save(keras_model(bundle), bundle, dst)


@click.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
def main(src: Path, dst: Path) -> None:
    """Export the bundle SRC anew as DST (format 2, this code's LiteRT graph, the same version)."""
    try:
        path = convert(src, dst)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB), version {read_meta(path)['version']}")


if __name__ == "__main__":
    main()
