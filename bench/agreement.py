"""Vote fidelity of K spread windows against every segment: the curve that chooses ``Settings.windows``.

Two measurements for each window count K and edge skip E:

* real library (full-length tracks): how often the K-window genre equals the all-segments genre.
  Tracks shorter than ``spread_min_seconds`` use all segments in both modes, so the table shows the
  agreement over every track and over the long tracks alone (where the windows actually apply).
* GTZAN valid split (30-s clips, never the test split): track accuracy of the K-window vote against
  the all-segments vote, with the same window plan applied below the usual length threshold.

Both decision rules are reported: ``soft`` (highest mean segment probability, the product's rule,
:func:`genretag.classify.vote`) and ``majority`` (most segment argmaxes, ties to the higher mean).

Decoded feature maps go through the product path (:func:`genretag.classify.prepare`) and are cached
on disk per setting, keyed by the files' size and mtime and the feature parameters, so a rerun with
another model only pays for forward passes.

    python bench/agreement.py [--library /work/music-full] [--windows 3 5 7 10 15 20] [--edges 0 10 20]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from genretag.audio import AUDIO_EXTENSIONS, AudioError  # noqa: E402
from genretag.classify import plan_windows, prepare, vote  # noqa: E402
from genretag.config import Settings, get_settings  # noqa: E402
from genretag.features import FEATURES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LIBRARY = REPO.parent / "music-full"
DEFAULT_GTZAN = REPO.parent / "shared" / "gtzan"
ACCEPT_AGREEMENT = 0.95
ACCEPT_DROP = 0.01
RULES = ("soft", "majority")  # the product's rule (classify.vote), and counting argmaxes for comparison


@dataclass
class FeatureSet:
    """Feature maps of several tracks under one setting; ``maps[i]`` is None where prepare failed."""

    paths: list[str]
    maps: list[np.ndarray | None]


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


def _prepare_maps(job: tuple[str, Settings]) -> np.ndarray | None:
    path, settings = job
    try:
        return prepare(path, settings).features
    except AudioError:
        return None


def cached_features(paths: Sequence[str], settings: Settings, cache: Path, jobs: int,
                    every: FeatureSet | None = None) -> FeatureSet:
    """Feature maps of ``paths`` under ``settings`` (segments, windows, edges), from the disk cache if fresh.

    Tracks that ``plan_windows`` leaves whole take their maps from ``every`` (the all-segments set)
    instead of being decoded again.
    """
    plan = {"segments": "all"} if settings.segments == "all" else {
        "segments": settings.segments, "windows": settings.windows,
        "edge": settings.edge_seconds, "min": settings.spread_min_seconds,
    }
    key_src = json.dumps({
        "files": [(p, os.path.getsize(p), os.path.getmtime(p)) for p in paths],
        "features": FEATURES.to_dict(),
        **plan,
    }, sort_keys=True)
    name = "-".join(f"{k}{v}" for k, v in plan.items())
    file = cache / f"{name}-{hashlib.sha256(key_src.encode()).hexdigest()[:12]}.npz"
    reuse = [every is not None and plan_windows(_duration(p), settings) is None for p in paths]
    if file.exists():
        with np.load(file) as z:
            ok, offsets, flat = z["ok"], z["offsets"], z["maps"]
        maps = [every.maps[i] if r else (flat[a:b] if good else None)
                for i, (r, good, a, b) in enumerate(zip(reuse, ok, offsets[:-1], offsets[1:]))]
        return FeatureSet(list(paths), maps)
    print(f"  decoding {len(paths)} files for {name} ...", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(jobs) as pool:
        fresh = iter(pool.map(_prepare_maps, [(p, settings) for p, r in zip(paths, reuse) if not r], chunksize=2))
        maps = [every.maps[i] if r else next(fresh) for i, r in enumerate(reuse)]
    sizes = [0 if m is None else len(m) for m in maps]
    flat = np.concatenate([m for m in maps if m is not None] or [np.zeros((0, *FEATURES.shape), np.float32)])
    cache.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(".partial.npz")
    np.savez(partial, ok=np.array([m is not None for m in maps]), offsets=np.cumsum([0] + sizes), maps=flat)
    os.replace(partial, file)
    return FeatureSet(list(paths), maps)


class Decider:
    """Per-track genres under both rules, one batched forward pass per feature set."""

    def __init__(self, settings: Settings) -> None:
        from genretag.model import Predictor, configure_tensorflow, load_bundle

        configure_tensorflow(settings.threads_per_worker)
        self.bundle = load_bundle(settings.model_path)
        self.predict = Predictor(self.bundle)

    def genres(self, fs: FeatureSet) -> dict[str, list[str | None]]:
        good = [m for m in fs.maps if m is not None]
        probs = self.predict(np.concatenate(good)) if good else np.zeros((0, len(self.bundle.labels)))
        labels = self.bundle.labels
        out: dict[str, list[str | None]] = {rule: [] for rule in RULES}
        at = 0
        for m in fs.maps:
            if m is None:
                for rule in RULES:
                    out[rule].append(None)
                continue
            p = probs[at: at + len(m)]
            at += len(m)
            out["soft"].append(vote(p, labels)[0])
            out["majority"].append(majority(p, labels))
        return out


def majority(probabilities: np.ndarray, labels: Sequence[str]) -> str:
    """The other rule: most segment argmaxes, a tie going to the higher mean probability."""
    counts = np.bincount(probabilities.argmax(axis=1), minlength=len(labels))
    tied = np.flatnonzero(counts == counts.max())
    return labels[int(tied[np.argmax(probabilities.mean(axis=0)[tied])])]


def agreement(a: Iterable[str | None], b: Iterable[str | None], mask: Iterable[bool]) -> tuple[float, int]:
    pairs = [(x, y) for x, y, m in zip(a, b, mask) if m and x is not None and y is not None]
    return (sum(x == y for x, y in pairs) / len(pairs) if pairs else float("nan")), len(pairs)


def accuracy(genres: Sequence[str | None], truth: Sequence[str]) -> float:
    return sum(g == t for g, t in zip(genres, truth)) / len(truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, default=DEFAULT_LIBRARY)
    parser.add_argument("--gtzan", type=Path, default=DEFAULT_GTZAN)
    parser.add_argument("--windows", type=int, nargs="+", default=[3, 5, 7, 10, 15, 20])
    parser.add_argument("--edges", type=float, nargs="+", default=[0.0, 10.0, 20.0])
    parser.add_argument("--gtzan-edge", type=float, default=0.0,
                        help="edge skip on the 30-s clips (excerpts from inside songs, no intro or fade-out to skip)")
    parser.add_argument("--cache", type=Path, default=None, help="default: <cache_dir>/bench-agreement")
    parser.add_argument("--jobs", type=int, default=2, help="decode processes while filling the cache")
    parser.add_argument("--limit", type=int, default=0, help="only the first N library files (quick checks)")
    args = parser.parse_args()

    base = get_settings()
    cache = args.cache or base.cache_dir / "bench-agreement"
    paths = audio_files(args.library)[: args.limit or None]
    clips = gtzan_valid(args.gtzan)
    clip_paths, truth = [p for p, _ in clips], [g for _, g in clips]

    # Decode everything first (worker processes, no TensorFlow), then load the model once.
    lib_all = cached_features(paths, base.replace(segments="all"), cache, args.jobs)
    gz_all = cached_features(clip_paths, base.replace(segments="all"), cache, args.jobs)
    long_mask = [m is not None and _duration(p) >= base.spread_min_seconds for p, m in zip(paths, lib_all.maps)]
    grid = [(k, e) for e in args.edges for k in args.windows]
    lib_k = {(k, e): cached_features(paths, base.replace(segments="spread", windows=k, edge_seconds=e), cache,
                                     args.jobs, lib_all) for k, e in grid}
    gz_settings = {(k, e): base.replace(segments="spread", windows=k, spread_min_seconds=0.0,
                                        edge_seconds=args.gtzan_edge)
                   for k, e in grid}
    gz_k = {ke: cached_features(clip_paths, s, cache, args.jobs, gz_all) for ke, s in gz_settings.items()}

    decider = Decider(base)
    ref = decider.genres(lib_all)
    gz_ref = decider.genres(gz_all)
    every = [True] * len(paths)
    n_long = sum(long_mask)
    failed = sum(m is None for m in lib_all.maps)
    print(f"model {base.model_path.name} version {decider.bundle.version}")
    print(f"real library {args.library}: {len(paths)} files, {n_long} long (>= {base.spread_min_seconds:g} s: "
          f"windows apply if they hold more than K segments), {failed} unclassifiable (too short or silent)")
    print(f"GTZAN valid clips: {len(clips)}; all-segments accuracy: "
          + ", ".join(f"{rule} rule {accuracy(gz_ref[rule], truth):.1%}" for rule in RULES))
    print()
    cells = f"{'agree all':>9} {'agree long':>10} {'GTZAN acc':>9} {'drop pts':>8} {'ok':>3}"
    header = f"{'K':>3} {'edge s':>6} | " + " | ".join(f"{r + ' rule: ' + cells}" for r in RULES)
    print(header)
    print("-" * len(header))
    chosen: dict[tuple[float, str], int] = {}
    for k, e in grid:
        g = decider.genres(lib_k[(k, e)])
        gg = decider.genres(gz_k[(k, e)])
        line = f"{k:>3} {e:>6g}"
        for rule in RULES:
            a_all, _ = agreement(g[rule], ref[rule], every)
            a_long, _ = agreement(g[rule], ref[rule], long_mask)
            acc = accuracy(gg[rule], truth)
            drop = accuracy(gz_ref[rule], truth) - acc
            ok = a_long >= ACCEPT_AGREEMENT and drop <= ACCEPT_DROP
            if ok:
                chosen.setdefault((e, rule), k)
            line += (f" | {'':>{len(rule) + 7}}{a_all:>9.1%} {a_long:>10.1%} {acc:>9.1%} {drop * 100:>+8.1f} "
                     f"{'yes' if ok else 'no':>3}")
        print(line)
    print()
    print(f"acceptance (strict): agreement over the long tracks >= {ACCEPT_AGREEMENT:.0%} and GTZAN accuracy drop "
          f"<= {ACCEPT_DROP * 100:g} point, the same rule on both sides. Smallest K meeting it:")
    for e in args.edges:
        print(f"  edge {e:g} s: " + ", ".join(f"{rule} rule {chosen.get((e, rule), 'none in the grid')}" for rule in RULES))


@functools.lru_cache(maxsize=None)
def _duration(path: str) -> float:
    from genretag.audio import probe

    try:
        return probe(path).duration
    except AudioError:
        return 0.0


if __name__ == "__main__":
    main()
