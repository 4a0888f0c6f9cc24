"""A bundle's LiteRT network: interpreter memory and CPU per segment, bundles side by side in one run.

Each bundle is measured in a fresh process (so one's allocations never count for another): VmRSS
before the interpreter, after ``allocate_tensors`` and one invocation (what the interpreter holds),
then CPU ms per segment over repeated single-segment invocations, one thread, as ``bundle.Predictor``
runs. Also the largest probability difference from the first bundle on the same random maps, and
the ratios against the first bundle.

    git show 841b6b2:genretag/data/default.genretag > /tmp/old-default.genretag
    python bench/interpreter.py /tmp/old-default.genretag default
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / 1024
    return 0.0


def measure(path: str, runs: int) -> dict[str, object]:
    """In a fresh process: the bundle's interpreter memory, CPU ms per segment and its outputs on fixed maps."""
    from genretag.bundle import load_bundle

    bundle = load_bundle(path)
    maps = np.random.default_rng(0).normal(size=(runs, *bundle.features.shape)).astype(np.float32)
    before = rss_mb()
    predict = bundle.predictor(threads=1)
    first = predict(maps[:1])
    held = rss_mb() - before
    t0 = time.process_time()
    probs = np.concatenate([first, predict(maps[1:])])
    ms = (time.process_time() - t0) / (runs - 1) * 1000
    return {"version": bundle.version, "interpreter_mb": held, "ms": ms, "probs": probs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", help="bundle files or shipped names; the first is the baseline")
    parser.add_argument("--runs", type=int, default=40, help="segments invoked one by one")
    args = parser.parse_args()

    from genretag.config import resolve_model

    print(f"load average {os.getloadavg()[0]:.2f}; {args.runs} segments, one thread, batch of one")
    results = []
    for name in args.bundles:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            results.append(pool.submit(measure, str(resolve_model(Path(name))), args.runs).result())
    base = results[0]
    print(f"{'bundle':<40}{'version':<40}{'interpreter MB':>15}{'CPU ms/seg':>11}{'x base':>8}{'max |p diff|':>13}")
    for name, r in zip(args.bundles, results):
        diff = float(np.abs(r["probs"] - base["probs"]).max()) if r["probs"].shape == base["probs"].shape else float("nan")
        print(f"{name:<40}{r['version']:<40}{r['interpreter_mb']:>15.1f}{r['ms']:>11.1f}"
              f"{base['ms'] / r['ms']:>8.2f}{diff:>13.2g}")


if __name__ == "__main__":
    main()
