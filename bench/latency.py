"""Latency of one 30-s GTZAN clip: LiteRT (ours) beside the old Keras-on-TensorFlow path.

1. ``genretag classify CLIP``, the product command in a fresh process: median wall of ``--runs-command``
   runs of ours and of the old product (bench/baseline.py: the last commit that ran TensorFlow).
   Target: median at most 1.5 s.
2. Warm inference over the clip's segments (decode and MFCC done once, not timed): the LiteRT
   predictor against Keras, compiled (``tf.function``, the old predictor) and ``model.predict``.
   Target: median below 50 ms.

    python bench/latency.py [--clip PATH] [--model cnn] [--runs 200] [--runs-command 5] [--threads 1]

``--model`` picks our bundle (a file or a shipped name); the old product always runs its own model.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import baseline

from genretag import audio, features
from genretag.config import get_settings

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "gtzan" / "blues" / "blues.00000.opus"
TARGET_MS = 50.0
TARGET_COMMAND_S = 1.5


def timed_ms(fn, runs: int) -> list[float]:
    """Wall-clock milliseconds of ``runs`` calls of ``fn`` after two warm-up calls."""
    fn()
    fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def command_seconds(clip: Path, runs: int, env: dict[str, str], cwd: Path) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` fresh ``genretag classify CLIP`` processes.

    One untimed run first (disk cache). CPU time is printed too: on a shared machine it moves less than wall.
    """
    command = [sys.executable, "-m", "genretag.cli", "classify", str(clip)]
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
        wall.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--runs-command", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="inference threads (LiteRT and TensorFlow alike)")
    parser.add_argument("--model", type=Path, help="our bundle: a file or a shipped name, e.g. 'cnn' "
                        "[default: GENRETAG_MODEL_PATH or the default bundle]")
    args = parser.parse_args()
    settings = get_settings().replace(model_path=args.model)
    args.clip = args.clip.resolve()  # the commands run from another working directory (the old product's tree)

    print(f"clip {args.clip.name}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"ours: {settings.model_path.name}", flush=True)
    ours, ours_cpu = command_seconds(args.clip, args.runs_command,
                                     {**os.environ, "GENRETAG_MODEL_PATH": str(settings.model_path.resolve())},
                                     baseline.REPO)
    old, old_cpu = command_seconds(args.clip, args.runs_command, baseline.env(), baseline.tree())
    print(f"`genretag classify`, median of {args.runs_command} fresh processes "
          f"(wall, ours: {', '.join(f'{s:.2f}' for s in ours)}; old: {', '.join(f'{s:.2f}' for s in old)})")
    print(f"{'':<28}{'wall s':>8}{'cpu s':>8}")
    print(f"{'LiteRT (ours)':<28}{statistics.median(ours):>8.2f}{statistics.median(ours_cpu):>8.2f}")
    print(f"{'Keras/TF (old, ' + baseline.BASELINE_REF + ')':<28}{statistics.median(old):>8.2f}"
          f"{statistics.median(old_cpu):>8.2f}")
    print(f"ratio old / ours: wall {statistics.median(old) / statistics.median(ours):.1f}x, cpu "
          f"{statistics.median(old_cpu) / statistics.median(ours_cpu):.1f}x; target wall <= {TARGET_COMMAND_S:g} s: "
          f"{'met' if statistics.median(ours) <= TARGET_COMMAND_S else 'NOT met'}", flush=True)

    from genretag.bundle import load_bundle
    from genretag.training.export import keras_model
    from genretag.training.networks import KerasPredictor, configure_tensorflow

    configure_tensorflow(args.threads)
    bundle = load_bundle(settings.model_path)
    maps = features.extract(audio.load(args.clip, bundle.features.sr), bundle.features)
    model = keras_model(bundle)
    x = bundle.normalise(maps)
    paths = {
        "LiteRT Predictor (ours)": bundle.predictor(args.threads),
        "Keras tf.function (old)": KerasPredictor(model, bundle),
        "Keras model.predict": lambda _: model.predict(x, verbose=0),
    }
    print(f"\nwarm inference: model {settings.model_path.name} version {bundle.version}, {model.count_params():,} "
          f"parameters, {len(bundle.files['model.tflite']) / 1e6:.2f} MB export; {len(maps)} segments, "
          f"{args.runs} warm runs, {args.threads} thread(s); the old predictor rows run this bundle's Keras weights")
    print(f"{'path':<28}{'median ms':>10}{'p95 ms':>10}")
    medians = {}
    for name, predict in paths.items():
        medians[name], p95 = summary(timed_ms(lambda: predict(maps), args.runs))
        print(f"{name:<28}{medians[name]:>10.2f}{p95:>10.2f}")
    ours_ms = medians["LiteRT Predictor (ours)"]
    print(f"speed-up of LiteRT (median): {medians['Keras tf.function (old)'] / ours_ms:.1f}x over the old predictor, "
          f"{medians['Keras model.predict'] / ours_ms:.1f}x over model.predict; target median < {TARGET_MS:g} ms: "
          f"{'met' if ours_ms < TARGET_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
