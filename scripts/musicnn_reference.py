"""musicnn's own outputs on a few GTZAN clips: the fixture tests/data/musicnn_reference.npz.

Runs in a separate reference venv, never genretag's (musicnn 0.1.0 needs tf-keras):

    python3 -m venv ../venv-musicnn
    ../venv-musicnn/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 'librosa>=0.10,<0.12'
    ../venv-musicnn/bin/pip install --no-deps musicnn==0.1.0
    TF_USE_LEGACY_KERAS=1 ../venv-musicnn/bin/python scripts/musicnn_reference.py

It uses musicnn's graph (``musicnn.models.define_model``) and checkpoint as ``musicnn.extractor``
does, with two of its bugs worked around: the log-mel is taken in float32 (``10000 * float16``
overflows to inf under NumPy 2, giving every clip the same tags), and the graph is built once and
every output is read per batch (its batch loop returns patch 0's ``penultimate`` for every patch).
The patches are ``batch_data``'s: the whole clip at 16 kHz, non-overlapping 187-frame patches.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
CLIPS = ("blues/blues.00000.opus", "classical/classical.00000.opus", "metal/metal.00000.opus")
MODEL = "MSD_musicnn"


def patches(path: Path):
    """musicnn's ``batch_data`` with its log-mel in float32: (n, 187, 96)."""
    import librosa
    import numpy as np
    from musicnn import configuration as config

    audio, sr = librosa.load(path, sr=config.SR)
    mel = librosa.feature.melspectrogram(y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE,
                                         n_mels=config.N_MELS).T.astype(np.float32)
    rep = np.log10(10000 * mel + 1)
    n = 187
    return np.stack([rep[t: t + n] for t in range(0, rep.shape[0] - n + 1, n)])


def main(argv: list[str] | None = None) -> int:
    import musicnn
    import numpy as np
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn import models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtzan", type=Path, default=REPO.parent / "shared" / "gtzan")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "musicnn_reference.npz")
    args = parser.parse_args(argv)

    tf.compat.v1.disable_eager_execution()
    x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
    is_training = tf.compat.v1.placeholder(tf.bool)
    logits, _, _, _, _, _, mean_pool, max_pool, penultimate = models.define_model(
        x, is_training, MODEL, len(config.MSD_LABELS))
    outputs = [mean_pool, max_pool, penultimate, tf.nn.sigmoid(logits)]
    session = tf.compat.v1.Session()
    tf.compat.v1.train.Saver().restore(session, os.path.join(os.path.dirname(musicnn.__file__), MODEL) + "/")

    rows: dict[str, list] = {k: [] for k in ("mean_pool", "max_pool", "penultimate", "tags", "input_mean")}
    counts = []
    for clip in CLIPS:
        batch = patches(args.gtzan / clip)
        counts.append(len(batch))
        for patch in batch:  # one patch per run, as musicnn's BATCH_SIZE = 1; every output read each time
            got = session.run(outputs, feed_dict={x: patch[None], is_training: False})
            for key, value in zip(("mean_pool", "max_pool", "penultimate", "tags"), got):
                rows[key].append(value[0])
            rows["input_mean"].append(patch.mean(dtype=np.float64))
    session.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, clips=np.array(CLIPS), patches=np.array(counts),
                        **{k: np.asarray(v, np.float64 if k == "input_mean" else np.float32) for k, v in rows.items()})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB): {sum(counts)} patches of {len(CLIPS)} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
