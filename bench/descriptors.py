"""Track descriptors: what each group costs, how close they come to the CSV, and windows against the full track.

Three parts, run under ``nice -n 5``:

* ``cost``: CPU seconds per 30-s clip of each group: the STFT and mel pass the maps already pay for, the
  groups computed on it, and the two groups left out (librosa's HPSS and ``beat_track``), on ``--clips`` clips.
* ``csv``: :func:`features.track_descriptors` of every clip held against its row of
  ``../shared/gtzan/features/features_30_sec.csv``, per column in units of that column's spread (std over the
  1,000 rows): the max, the 99th percentile and the median, and the clip at the max, apart for the full
  22,050-Hz copies, the 16-kHz copies and the classical clips that hold only their first 15 s (the CSV's row
  covers 30 s).
* ``groups``: what each group adds, on the CSV alone: 5-fold CV (stratified by genre, seed 0) of a softmax
  regression (numpy, standardised columns, L2 1e-2) over the 710 rows of clips not on the test list, with all
  57 descriptor columns and with groups left out. A quick linear probe, not the descriptor network.
* ``windows``: on long real tracks (``--library``, e.g. ``../music-small``), the descriptors pooled over the
  windows the staged vote plans (the first stage, and all ``windows``) against the full-track computation,
  in the same units.

    .venv/bin/python bench/descriptors.py cost csv groups windows --library ../music-small
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genretag import audio, features  # noqa: E402
from genretag.classify import plan_windows, stage_ends  # noqa: E402
from genretag.config import Settings  # noqa: E402
from genretag.bundle import GENRES  # noqa: E402

D = features.DESCRIPTORS
SHARED = Path(os.environ.get("GENRETAG_SHARED_DIR", REPO.parent / "shared"))
CSV = SHARED / "gtzan" / "features" / "features_30_sec.csv"


def csv_rows() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The CSV's descriptor columns by clip name (``blues.00000``), and each column's std over all rows."""
    with open(CSV, newline="") as f:
        rows = {r["filename"].rsplit(".", 1)[0]: np.array([float(r[c]) for c in D.names]) for r in csv.DictReader(f)}
    return rows, np.std(np.stack(list(rows.values())), axis=0)


def cpu(fn) -> tuple[float, object]:
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def cost(clips: list[Path]) -> None:
    import librosa

    groups: dict[str, list[float]] = {}
    for path in clips:
        y = audio.load(path, D.sr)[None, :]
        t_stft, spectrum = cpu(lambda: features.stft(y, features.MFCC))
        t_mel, db = cpu(lambda: features.log_mel(features.power(spectrum), features.MFCC))
        t_desc, values = cpu(lambda: features.frame_values(y, spectrum, db, D))
        t_sums, _ = cpu(lambda: features.frame_sums(values))
        t_hpss, _ = cpu(lambda: librosa.effects.hpss(y[0]))
        t_tempo, _ = cpu(lambda: librosa.beat.beat_track(y=y[0], sr=D.sr))
        for name, t in [("STFT (shared with the maps)", t_stft), ("mel + dB (shared)", t_mel),
                        ("chroma, rms, spectral, zcr, 20 MFCC on them", t_desc + t_sums),
                        ("HPSS (librosa.effects.hpss), left out", t_hpss),
                        ("tempo (librosa.beat.beat_track), left out", t_tempo)]:
            groups.setdefault(name, []).append(t)
    print(f"CPU s per 30-s clip, median of {len(clips)} clips (first clip warms up and is dropped):")
    for name, times in groups.items():
        print(f"  {name:48s} {np.median(times[1:] if len(times) > 1 else times):7.3f}")


def kinds() -> dict[str, str]:
    """Each clip's kind from the subset's MANIFEST.tsv: full 30-s 22,050-Hz copy, 16-kHz copy, or first 15 s only."""
    with open(SHARED / "gtzan" / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {r["clip"]: "16 kHz" if int(r["original_sample_rate"]) < 22050 else
            "15 s only" if float(r["original_seconds"]) < 29 else "full, 22,050 Hz" for r in rows}


def against_csv(clips: list[Path]) -> None:
    rows, spread = csv_rows()
    kind_of = kinds()
    by_kind: dict[str, list[tuple[str, np.ndarray]]] = {}
    for path in clips:
        clip = path.name.rsplit(".", 1)[0]
        y = audio.load(path, D.sr)
        kind = kind_of.get(clip, "full, 22,050 Hz")
        if kind != "16 kHz" and len(y) < 29 * D.sr:
            kind = "15 s only"
        z = np.abs(features.track_descriptors(y) - rows[clip]) / spread
        by_kind.setdefault(kind, []).append((clip, z))
    for kind, results in sorted(by_kind.items()):
        z = np.stack([r[1] for r in results])
        print(f"|ours - CSV| / column std over the CSV's 1,000 rows: {len(results)} clips, {kind}")
        print(f"  {'column':28s} {'max':>7s} {'p99':>7s} {'median':>7s}  clip at max")
        for j, name in enumerate(D.names):
            print(f"  {name:28s} {z[:, j].max():7.3f} {np.percentile(z[:, j], 99):7.3f} {np.median(z[:, j]):7.3f}"
                  f"  {results[int(z[:, j].argmax())][0]}")


def softmax_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-9
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    w, b, onehot = np.zeros((x_train.shape[1], len(GENRES))), np.zeros(len(GENRES)), np.eye(len(GENRES))[y_train]
    for _ in range(3000):
        z = x_train @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        g = (p / p.sum(1, keepdims=True) - onehot) / len(x_train)
        w -= 0.5 * (x_train.T @ g + l2 * w)
        b -= 0.5 * g.sum(0)
    return (x_test @ w + b).argmax(1)


def groups() -> None:
    test = {Path(line).stem for line in (SHARED / "gtzan" / "splits" / "test_filtered.txt").read_text().split()}
    with open(CSV, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["filename"].rsplit(".", 1)[0] not in test]
    columns = [c for c in rows[0] if c not in ("filename", "length", "label")]
    x = np.array([[float(r[c]) for c in columns] for r in rows])
    y = np.array([GENRES.index(r["label"]) for r in rows])
    rng, fold = np.random.default_rng(0), np.zeros(len(y), int)
    for g in range(len(GENRES)):
        members = rng.permutation(np.flatnonzero(y == g))
        fold[members] = np.arange(len(members)) % 5
    print(f"softmax regression on the CSV, 5-fold CV over {len(y)} clips not on the test list:")
    for name, drop in [("all columns", ()), ("no HPSS", ("harmony", "perceptr")), ("no tempo", ("tempo",)),
                       ("no HPSS, no tempo (computed here)", ("harmony", "perceptr", "tempo")),
                       ("also no chroma", ("harmony", "perceptr", "tempo", "chroma")),
                       ("MFCC only", ("harmony", "perceptr", "tempo", "chroma", "rms", "spectral", "rolloff", "zero"))]:
        keep = [i for i, c in enumerate(columns) if not c.startswith(drop)]
        acc = [np.mean(softmax_predict(x[fold != k][:, keep], y[fold != k], x[fold == k][:, keep]) == y[fold == k])
               for k in range(5)]
        print(f"  {name:36s} {len(keep):2d} columns  accuracy {np.mean(acc):.3f} +- {np.std(acc):.3f}")


def window(y: np.ndarray, start: float) -> np.ndarray:
    n = features.MFCC.segment_samples
    part = y[int(round(start * D.sr)):][:n]
    return np.pad(part, (0, n - len(part)))


def windows(library: Path) -> None:
    _, spread = csv_rows()
    settings = Settings()
    paths = sorted(p for p in library.rglob("*") if p.suffix.lower() in {".ogg", ".mp3", ".flac", ".opus"})
    first_z, all_z = [], []
    for path in paths:
        y = audio.load(path, D.sr)
        starts = plan_windows(len(y) / D.sr, settings)
        if starts is None:
            continue
        full = features.track_descriptors(y)
        segs = np.stack([window(y, s) for s in starts])  # cut from the full decode: the method, not the seeks
        _, sums = features.analyse(segs)
        first = int(features.loud_enough(segs, features.MFCC)[: stage_ends(len(starts), settings)[0]].sum())
        heard_first = features.FrameSums(sums.count[:first], sums.total[:first], sums.squares[:first])
        first_z.append(np.abs(heard_first.pooled().descriptors()[0] - full) / spread)
        all_z.append(np.abs(sums.pooled().descriptors()[0] - full) / spread)
    print(f"windows pooled against the full track, |diff| / column std, {len(all_z)} long tracks of {library}:")
    print(f"  {'column':28s} {'first stage: median':>20s} {'max':>7s} {'all windows: median':>20s} {'max':>7s}")
    f, a = np.stack(first_z), np.stack(all_z)
    for j, name in enumerate(D.names):
        print(f"  {name:28s} {np.median(f[:, j]):20.3f} {f[:, j].max():7.3f} {np.median(a[:, j]):20.3f} "
              f"{a[:, j].max():7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", choices=["cost", "csv", "groups", "windows"])
    parser.add_argument("--clips", type=int, default=0, help="clips per genre for cost and csv (0: all held)")
    parser.add_argument("--library", type=Path, default=REPO.parent / "music-small")
    args = parser.parse_args()
    per_genre = [sorted((SHARED / "gtzan" / g).glob("*.opus")) for g in GENRES]
    clips = [p for ps in per_genre for p in (ps[: args.clips] if args.clips else ps)]
    if "cost" in args.parts:
        cost([p for ps in per_genre for p in ps[:2]])
    if "csv" in args.parts:
        against_csv(clips)
    if "groups" in args.parts:
        groups()
    if "windows" in args.parts:
        windows(args.library)


if __name__ == "__main__":
    main()
