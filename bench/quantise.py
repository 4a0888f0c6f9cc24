"""Cheaper exports of a bundle's network, measured against its shipped float32 export; nothing is saved.

Candidates, converted from the bundle's Keras weights by the LiteRT converter:

* ``float16``: float16 weights (half the file; XNNPACK computes in float32 all the same);
* ``dynamic``: dynamic-range quantisation (int8 weights, activations quantised on the fly).

For each: CPU ms per segment (one thread, batches of one, as the predictor runs), and on the GTZAN
valid clips (never the test split) and optionally real tracks, every segment's probabilities
against the shipped export: the largest difference per segment and per clip mean, the segments whose
top genre flips, and the clips or tracks whose voted genre (top of the mean) changes. A candidate is
acceptable only with no clip or track changing genre and its largest clip-mean difference within
``--tolerance``.

    python bench/quantise.py [--model default] [--gtzan ../shared/gtzan] [--library DIR] [--tolerance 0.02]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import time
from pathlib import Path

import numpy as np

from agreement import gtzan_valid  # bench/ is the script's folder, so its sibling imports
from genretag import audio, features
from genretag.bundle import TFLITE, Bundle, load_bundle
from genretag.config import resolve_model

REPO = Path(__file__).resolve().parents[1]


def convert(bundle: Bundle, kind: str) -> bytes:
    """The bundle's network rebuilt from its Keras weights and converted as ``kind``."""
    import tensorflow as tf

    from genretag.training.export import keras_model

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model(bundle))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16":
        converter.target_spec.supported_types = [tf.float16]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def ms_per_segment(bundle: Bundle, maps: np.ndarray) -> float:
    """CPU ms per segment of the predictor (one thread), best of 3 passes over ``maps``."""
    predict = bundle.predictor(threads=1)
    predict(maps[:2])
    best = np.inf
    for _ in range(3):
        t0 = time.process_time()
        predict(maps)
        best = min(best, (time.process_time() - t0) / len(maps) * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("default"))
    parser.add_argument("--gtzan", type=Path, default=REPO.parent / "shared" / "gtzan")
    parser.add_argument("--library", type=Path, help="also these real tracks (first --segments segments each)")
    parser.add_argument("--segments", type=int, default=40)
    parser.add_argument("--tolerance", type=float, default=0.02, help="largest clip-mean probability difference")
    parser.add_argument("--kinds", nargs="+", default=["float16", "dynamic"])
    args = parser.parse_args()

    bundle = load_bundle(resolve_model(args.model))
    params = bundle.features
    clips = gtzan_valid(args.gtzan)
    sets = [("GTZAN valid", [(p, features.extract(audio.load(p, params.sr), params)) for p, _ in clips])]
    if args.library:
        tracks = []
        for p in sorted(q for q in args.library.rglob("*") if q.suffix.lower() in audio.AUDIO_EXTENSIONS):
            try:
                maps = features.extract(audio.load(p, params.sr), params)[: args.segments]
            except audio.AudioError:
                continue
            if len(maps):
                tracks.append((str(p), maps))
        sets.append((f"real tracks {args.library}", tracks))
    every = np.concatenate([m for _, items in sets for _, m in items])
    truth = [g for _, g in clips]
    shipped = bundle.predictor(threads=1)
    reference = {name: [shipped(m) for _, m in items] for name, items in sets}
    base_ms = ms_per_segment(bundle, every[:64])
    size = len(bundle.files[TFLITE]) / 1e6
    print(f"model {args.model} version {bundle.version}: float32 export {size:.2f} MB, {base_ms:.1f} CPU ms per "
          f"segment; {len(every)} segments; GTZAN valid accuracy {np.mean([r.mean(0).argmax() == bundle.labels.index(t) for r, t in zip(reference['GTZAN valid'], truth)]):.1%}")
    for kind in args.kinds:
        candidate = dataclasses.replace(bundle, files={**bundle.files, TFLITE: convert(bundle, kind)})
        predict = candidate.predictor(threads=1)
        ms = ms_per_segment(candidate, every[:64])
        print(f"\n{kind}: {len(candidate.files[TFLITE]) / 1e6:.2f} MB, {ms:.1f} CPU ms per segment "
              f"({base_ms / ms:.2f}x the float32 export)")
        ok = True
        for name, items in sets:
            got = [predict(m) for _, m in items]
            ref = reference[name]
            seg = max(float(np.abs(g - r).max()) for g, r in zip(got, ref))
            mean = max(float(np.abs(g.mean(0) - r.mean(0)).max()) for g, r in zip(got, ref))
            flips = sum(int((g.argmax(1) != r.argmax(1)).sum()) for g, r in zip(got, ref))
            changed = [p for (p, _), g, r in zip(items, got, ref) if g.mean(0).argmax() != r.mean(0).argmax()]
            line = (f"  {name}: {len(items)} files; max |p diff| segment {seg:.4f}, file mean {mean:.4f}; "
                    f"segments flipped {flips}/{sum(len(r) for r in ref)}; files changing genre {len(changed)}")
            if name == "GTZAN valid":
                acc = np.mean([g.mean(0).argmax() == bundle.labels.index(t) for g, t in zip(got, truth)])
                line += f"; accuracy {acc:.1%}"
            print(line + "".join(f"\n    changed: {p}" for p in changed))
            ok = ok and not changed and mean <= args.tolerance
        print(f"  acceptable (no genre changes, clip-mean difference <= {args.tolerance:g}): {'yes' if ok else 'no'}")


if __name__ == "__main__":
    main()
