"""Warm inference latency over the 10 segments of one 30-s GTZAN clip: Predictor vs model.predict.

The features are computed once (decode and MFCC are not timed); what is timed is what a warm worker
pays per clip for inference. Target: median below 50 ms.

    python bench/latency.py [--clip PATH] [--runs 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from genretag import audio, features  # noqa: E402
from genretag.config import get_settings  # noqa: E402

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "gtzan" / "blues" / "blues.00000.opus"
TARGET_MS = 50.0


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    args = parser.parse_args()

    from genretag.model import Predictor, configure_tensorflow, load_bundle

    settings = get_settings()
    configure_tensorflow(args.threads)
    bundle = load_bundle(settings.model_path)
    maps = features.extract(audio.load(args.clip, bundle.features.sr), bundle.features)
    predictor = Predictor(bundle)
    x = bundle.normalise(maps)

    ours = timed_ms(lambda: predictor(maps), args.runs)
    naive = timed_ms(lambda: bundle.model.predict(x, verbose=0), args.runs)
    ours_med, ours_p95 = summary(ours)
    naive_med, naive_p95 = summary(naive)

    print(f"model {settings.model_path} version {bundle.version}: {os.path.getsize(settings.model_path) / 1e6:.2f} MB, "
          f"{bundle.model.count_params():,} parameters")
    print(f"clip {args.clip.name}: {len(maps)} segments, {args.runs} warm runs, {args.threads} TF thread(s)")
    print(f"{'path':<28}{'median ms':>10}{'p95 ms':>10}")
    print(f"{'Predictor (tf.function)':<28}{ours_med:>10.2f}{ours_p95:>10.2f}")
    print(f"{'model.predict':<28}{naive_med:>10.2f}{naive_p95:>10.2f}")
    print(f"speed-up (median): {naive_med / ours_med:.1f}x; target median < {TARGET_MS:g} ms: "
          f"{'met' if ours_med < TARGET_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
