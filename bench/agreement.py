"""Vote fidelity of staged window votes against every segment: the curve that chooses the vote settings.

For each setting (K = at most ``windows``, ``first_windows``, ``vote_z``), every file is classified
through the product path (:meth:`genretag.classify.Classifier.classify`, stages and all) and
compared with the all-segments vote of the same model (``segments="all"``):

* real library (full-length tracks): how often the staged genre equals the all-segments genre,
  over every classifiable track and over the long ones (>= ``spread_min_seconds``, where windows
  apply), and how many windows the long tracks used on average (decoding cost follows it);
* GTZAN valid split (30-s clips, never the test split): track accuracy of both, with the windows
  forced onto the clips (``spread_min_seconds=0``).

A ``vote_z`` of ``inf`` never stops early: every track uses K windows (the fixed-K vote).

    python bench/agreement.py [--library ../music-full] [--model cnn] [--windows 40] [--first 10] [--z 0.5 1 2 inf]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from genretag import features
from genretag.audio import AUDIO_EXTENSIONS, AudioError
from genretag.bundle import read_meta
from genretag.config import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LIBRARY = REPO.parent / "music-full"
DEFAULT_GTZAN = REPO.parent / "shared" / "gtzan"
ACCEPT_AGREEMENT = 0.95
ACCEPT_DROP = 0.01


@dataclass(frozen=True)
class Outcome:
    genre: str | None  # None: unclassifiable (too short, silent, unreadable)
    windows: int  # segments that voted
    duration: float


def audio_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def gtzan_valid(root: Path) -> list[tuple[str, str]]:
    """(path, genre) of the valid-split clips present in the Opus subset."""
    out = []
    for line in (root / "splits" / "valid_filtered.txt").read_text().split():
        genre, name = line.split("/")
        path = root / genre / (name.rsplit(".", 1)[0] + ".opus")
        if path.exists():
            out.append((str(path), genre))
    return out


_classifiers: dict[Settings, object] = {}


def _classify(job: tuple[str, Settings]) -> Outcome:
    """In a pool process: classify one file under ``settings`` (one model load per process)."""
    from genretag.bundle import load_bundle
    from genretag.classify import Classifier

    path, settings = job
    if settings not in _classifiers:
        bundle = next(iter(_classifiers.values())).bundle if _classifiers else load_bundle(settings.model_path)
        _classifiers[settings] = Classifier(bundle, settings)
    try:
        result = _classifiers[settings].classify(path)
    except AudioError:
        return Outcome(None, 0, 0.0)
    return Outcome(result.genre, result.segments_used, result.duration)


def classify_all(pool: ProcessPoolExecutor, paths: Sequence[str], settings: Settings) -> list[Outcome]:
    return list(pool.map(_classify, [(p, settings) for p in paths], chunksize=4))


def agreement(a: Sequence[Outcome], b: Sequence[Outcome], mask: Sequence[bool]) -> float:
    pairs = [(x.genre, y.genre) for x, y, m in zip(a, b, mask) if m and x.genre and y.genre]
    return sum(x == y for x, y in pairs) / len(pairs) if pairs else float("nan")


def accuracy(outcomes: Sequence[Outcome], truth: Sequence[str]) -> float:
    return sum(o.genre == t for o, t in zip(outcomes, truth)) / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, default=DEFAULT_LIBRARY)
    parser.add_argument("--gtzan", type=Path, default=DEFAULT_GTZAN)
    parser.add_argument("--windows", type=int, nargs="+", default=[40], help="K, the most windows a vote may use")
    parser.add_argument("--first", type=int, nargs="+", default=[10], help="windows of the first stage")
    parser.add_argument("--z", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5, 2.0, math.inf],
                        help="vote_z values; inf = never stop early (fixed K)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes, each with the model")
    parser.add_argument("--limit", type=int, default=0, help="only the first N library files (quick checks)")
    parser.add_argument("--model", type=Path, help="the bundle: a file or a shipped name, e.g. 'cnn' "
                        "[default: GENRETAG_MODEL_PATH or the default bundle]")
    args = parser.parse_args()

    base = get_settings().replace(inference_threads=1, model_path=args.model)
    paths = audio_files(args.library)[: args.limit or None]
    clips = gtzan_valid(args.gtzan)
    clip_paths, truth = [p for p, _ in clips], [g for _, g in clips]
    grid = [(k, f, z) for k in args.windows for f in args.first for z in args.z if f <= k]

    with ProcessPoolExecutor(args.jobs, initializer=features.one_blas_thread) as pool:
        print("  all segments: library ...", file=sys.stderr, flush=True)
        ref = classify_all(pool, paths, base.replace(segments="all"))
        gz_ref = classify_all(pool, clip_paths, base.replace(segments="all"))
        ok = [o.genre is not None for o in ref]
        long_mask = [o.genre is not None and o.duration >= base.spread_min_seconds for o in ref]
        n_long = sum(long_mask)
        print(f"model {base.model_path.name} version {read_meta(base.model_path)['version']}")
        print(f"real library {args.library}: {len(paths)} files, {sum(ok)} classifiable, {n_long} long "
              f"(>= {base.spread_min_seconds:g} s, where windows apply)")
        print(f"GTZAN valid clips: {len(clips)}; all-segments accuracy {accuracy(gz_ref, truth):.1%}")
        print()
        header = (f"{'K':>3} {'first':>5} {'z':>5} | {'agree all':>9} {'agree long':>10} {'windows/long':>12} | "
                  f"{'GTZAN acc':>9} {'drop pts':>8} | ok")
        print(header)
        print("-" * len(header))
        passing = []
        for k, first, z in grid:
            print(f"  K={k} first={first} z={z:g} ...", file=sys.stderr, flush=True)
            settings = base.replace(segments="spread", windows=k, first_windows=first, vote_z=z)
            got = classify_all(pool, paths, settings)
            gz = classify_all(pool, clip_paths, settings.replace(spread_min_seconds=0.0))
            a_all, a_long = agreement(got, ref, ok), agreement(got, ref, long_mask)
            used = sum(o.windows for o, m in zip(got, long_mask) if m) / max(n_long, 1)
            acc = accuracy(gz, truth)
            drop = accuracy(gz_ref, truth) - acc
            good = a_long >= ACCEPT_AGREEMENT and drop <= ACCEPT_DROP
            if good:
                passing.append((used, k, first, z))
            print(f"{k:>3} {first:>5} {z:>5g} | {a_all:>9.1%} {a_long:>10.1%} {used:>12.1f} | "
                  f"{acc:>9.1%} {drop * 100:>+8.1f} | {'yes' if good else 'no'}", flush=True)
    print()
    print(f"acceptance: agreement over the long tracks >= {ACCEPT_AGREEMENT:.0%} and GTZAN accuracy drop "
          f"<= {ACCEPT_DROP * 100:g} point.")
    if passing:
        used, k, first, z = min(passing)
        print(f"cheapest passing setting: K={k}, first_windows={first}, vote_z={z:g} ({used:.1f} windows per long track)")
    else:
        print("no setting in the grid passes")


if __name__ == "__main__":
    main()
