"""MFCC speed: librosa's MFCC (the baseline, per segment as the maps are defined) beside ours, on 20 windows.

Ours is float32 on scipy's FFT from one STFT; run under ``nice -n 5``. Also times each one's first call in a
fresh process (librosa's numba warm-up) and prints the largest difference between the two.

With ``--gtzan``, every clip held: the largest difference of the maps, and whether a model (``--model``, a
bundle's weights, read whatever features it names) calls any segment or track differently on ours than on
librosa's (the same per-segment dB floor on both sides, so only the float32 path differs).

    .venv/bin/python bench/features.py [--clip FILE] [--repeats 20] [--gtzan [--model BUNDLE]]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genretag import audio, features  # noqa: E402

P = features.MFCC
FIRST_CALL = """
import time, numpy as np
y = (np.random.default_rng(0).standard_normal({n}) * 0.1).astype(np.float32)
t = time.process_time()
{call}
print(time.process_time() - t)
"""


def librosa_mfcc(windows: np.ndarray) -> np.ndarray:
    import librosa

    return np.stack([librosa.feature.mfcc(y=w, sr=P.sr, n_mfcc=P.n_mfcc, n_fft=P.n_fft, hop_length=P.hop_length).T
                     for w in windows])


def librosa_batched(windows: np.ndarray) -> np.ndarray:
    """Today's path before this change: one librosa call over the batch (its dB floor is the batch's)."""
    import librosa

    return librosa.feature.mfcc(y=windows, sr=P.sr, n_mfcc=P.n_mfcc, n_fft=P.n_fft, hop_length=P.hop_length)


def best_of(fn, windows: np.ndarray, repeats: int) -> float:
    """Least CPU time (all threads) of ``repeats`` calls: the work, steadier than wall time on a shared machine."""
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn(windows)
        times.append(time.process_time() - t)
    return min(times)


def first_call(call: str) -> float:
    code = FIRST_CALL.format(n=P.segment_samples, call=call)
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split()[-1])


def genres_on_gtzan(gtzan: Path, model_path: Path) -> None:
    import tempfile
    import zipfile

    from genretag.classify import vote
    from genretag.bundle import GENRES, read_meta
    from genretag.training.networks import build, configure_tensorflow

    configure_tensorflow(2)
    meta = read_meta(model_path)
    net = build(meta["architecture"], P.shape, len(meta["labels"]))
    with zipfile.ZipFile(model_path) as zf, tempfile.TemporaryDirectory() as tmp:
        zf.extract("model.weights.h5", tmp)
        net.load_weights(Path(tmp) / "model.weights.h5")
    mean, std = (np.asarray(meta["normalisation"][k], np.float32) for k in ("mean", "std"))

    def probs(maps: np.ndarray) -> np.ndarray:
        return net.predict(((maps - mean) / std)[..., None], batch_size=256, verbose=0)

    worst, seg_flips, segs, track_flips, tracks = 0.0, 0, 0, [], 0
    for genre in GENRES:
        for clip in sorted((gtzan / genre).glob("*.opus")):
            segments = features.segment(audio.load(clip, P.sr))
            segments = segments[features.loud_enough(segments, P)]
            if not len(segments):
                continue
            ours, base = features.mfcc(segments, P), librosa_mfcc(segments)
            worst = max(worst, float(np.abs(ours - base).max()))
            p_ours, p_base = probs(ours), probs(base)
            seg_flips += int((p_ours.argmax(1) != p_base.argmax(1)).sum())
            segs += len(segments)
            tracks += 1
            if vote(p_ours, GENRES)[0] != vote(p_base, GENRES)[0]:
                track_flips.append(clip.name)
    print(f"GTZAN, {tracks} clips, {segs} segments, model {meta['version']}:")
    print(f"  max |ours - librosa| over every map: {worst:.2e}")
    print(f"  segments called differently: {seg_flips} of {segs}; tracks voted differently: {len(track_flips)} "
          f"of {tracks} {track_flips}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("GENRETAG_SHARED_DIR", REPO.parent / "shared"))
    parser.add_argument("--clip", default=str(shared / "gtzan" / "blues" / "blues.00000.opus"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--gtzan", action="store_true", help="every clip held: map differences and genre changes")
    parser.add_argument("--model", type=Path, default=REPO / "genretag" / "data" / "cnn.genretag")
    args = parser.parse_args()
    if args.gtzan:
        genres_on_gtzan(shared / "gtzan", args.model)
        return
    y = audio.load(args.clip, P.sr)
    starts = np.linspace(0, len(y) - P.segment_samples, 20).astype(int)
    windows = np.stack([y[s: s + P.segment_samples] for s in starts])
    base, ours = librosa_mfcc(windows), features.mfcc(windows, P)  # also warms both up
    librosa_batched(windows)
    t_batched = best_of(librosa_batched, windows, args.repeats)
    t_base = best_of(librosa_mfcc, windows, args.repeats)
    t_ours = best_of(lambda w: features.mfcc(w, P), windows, args.repeats)
    print(f"20 windows of {Path(args.clip).name}, CPU time, best of {args.repeats}:")
    print(f"  librosa.feature.mfcc per window  {t_base * 1e3:7.1f} ms")
    print(f"  librosa.feature.mfcc batched     {t_batched * 1e3:7.1f} ms   (batch floor: not per segment)")
    print(f"  features.mfcc (float32, scipy)   {t_ours * 1e3:7.1f} ms   ratio {t_base / t_ours:.2f}x per window,"
          f" {t_batched / t_ours:.2f}x batched")
    print(f"  max |ours - librosa|             {np.abs(base - ours).max():.2e}")
    w_base = first_call("import librosa; librosa.feature.mfcc(y=y, sr=22050, n_mfcc=13, n_fft=2048, hop_length=512)")
    w_ours = first_call("from genretag import features; features.mfcc(y[None, :], features.MFCC)")
    print(f"first call in a fresh process, import included, CPU s: librosa {w_base:.2f} s, ours {w_ours:.2f} s")


if __name__ == "__main__":
    main()
