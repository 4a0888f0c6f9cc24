"""Port musicnn's MSD_musicnn weights to genretag's Keras 3 backbone (genretag/training/musicnn.py).

Reads the TF1 checkpoint inside an installed ``musicnn`` 0.1.0 (the package folder, or the wheel
file itself) with ``tf.train.load_checkpoint``, assigns each variable to the layer that
re-implements it, and writes ``genretag/training/data/musicnn_msd.weights.h5`` with musicnn's ISC
licence beside it. Run once, with genretag's training extra; musicnn itself is never imported:

    python scripts/port_musicnn.py ../venv-musicnn/lib/python3.11/site-packages/musicnn
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CHECKPOINT = "MSD_musicnn"
# Our layer -> the checkpoint's TF1 layer, in musicnn's creation order (models.build_musicnn).
CONVOLUTIONS = {
    "timbral_74": "conv2d", "timbral_77": "conv2d_1", "temporal_128": "conv2d_2", "temporal_64": "conv2d_3",
    "temporal_32": "conv2d_4", "midend_1": "conv2d_5", "midend_2": "conv2d_6", "midend_3": "conv2d_7",
    "penultimate": "dense", "tags": "dense_1",
}
BATCH_NORMS = {
    "input_bn": "batch_normalization", "timbral_74_bn": "batch_normalization_1",
    "timbral_77_bn": "batch_normalization_2", "temporal_128_bn": "batch_normalization_3",
    "temporal_64_bn": "batch_normalization_4", "temporal_32_bn": "batch_normalization_5",
    "midend_1_bn": "batch_normalization_6", "midend_2_bn": "batch_normalization_7",
    "midend_3_bn": "batch_normalization_8", "pool_bn": "batch_normalization_9",
    "penultimate_bn": "batch_normalization_10",
}


def unpack(source: Path, into: Path) -> tuple[Path, Path]:
    """The checkpoint prefix and licence file of a musicnn package folder or wheel, copied under ``into``.

    The wheel's checkpoint files have an empty prefix (``MSD_musicnn/.index``) and its ``checkpoint``
    file points at the author's machine, so they are copied under a plain prefix of our own.
    """
    prefix = into / "msd_musicnn"
    if source.is_file():
        with zipfile.ZipFile(source) as wheel:
            names = wheel.namelist()
            for suffix in (".index", ".data-00000-of-00001"):
                prefix.with_name(prefix.name + suffix).write_bytes(wheel.read(f"musicnn/{CHECKPOINT}/{suffix}"))
            licence = next(n for n in names if n.endswith(".dist-info/LICENSE.md"))
            (into / "LICENSE.md").write_bytes(wheel.read(licence))
    else:
        for suffix in (".index", ".data-00000-of-00001"):
            shutil.copyfile(source / CHECKPOINT / suffix, prefix.with_name(prefix.name + suffix))
        licence = next(source.parent.glob("musicnn-*.dist-info/LICENSE.md"))
        shutil.copyfile(licence, into / "LICENSE.md")
    return prefix, into / "LICENSE.md"


def port(prefix: Path):
    """The Keras backbone holding the checkpoint's weights."""
    import tensorflow as tf

    from genretag.training.musicnn import build_backbone

    reader = tf.train.load_checkpoint(str(prefix))
    model = build_backbone()
    for ours, theirs in CONVOLUTIONS.items():
        layer = model.get_layer(ours)
        kernel = reader.get_tensor(f"{theirs}/kernel")
        if ours.startswith("midend"):  # TF1 conv2d over (frames, all channels, 1) is our Conv1D
            kernel = kernel.reshape(kernel.shape[0], kernel.shape[1], kernel.shape[3])
        layer.set_weights([kernel, reader.get_tensor(f"{theirs}/bias")])
    for ours, theirs in BATCH_NORMS.items():
        model.get_layer(ours).set_weights(
            [reader.get_tensor(f"{theirs}/{v}") for v in ("gamma", "beta", "moving_mean", "moving_variance")])
    ported = {w.path for layer in (*CONVOLUTIONS, *BATCH_NORMS) for w in model.get_layer(layer).weights}
    missing = [w.path for w in model.weights if w.path not in ported]
    if missing:
        raise SystemExit(f"weights left unported: {missing}")
    return model


def main(argv: list[str] | None = None) -> int:
    from genretag.training.musicnn import LICENCE, WEIGHTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("musicnn", type=Path, help="the installed musicnn package folder, or its wheel")
    parser.add_argument("--out", type=Path, default=WEIGHTS, help=f"weights file to write [default: {WEIGHTS}]")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        prefix, licence = unpack(args.musicnn, Path(tmp))
        model = port(prefix)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(args.out)
        notice = args.out.parent / LICENCE.name
        notice.write_text("The weights in musicnn_msd.weights.h5 are musicnn 0.1.0's MSD_musicnn model\n"
                          "(https://github.com/jordipons/musicnn), ported to Keras by scripts/port_musicnn.py.\n"
                          "Its licence (ISC):\n\n" + licence.read_text())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {model.count_params():,} weights) and {notice}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
