"""MFCC speed: librosa's MFCC (the baseline, per segment as the maps are defined) beside ours, on 20 windows.

Ours is float32 on scipy's FFT from one STFT; run under ``nice -n 5``. Also times each one's first call in a
fresh process (librosa's numba warm-up) and prints the largest difference between the two.

    .venv/bin/python bench/features.py [--clip FILE] [--repeats 20]
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
t = time.perf_counter()
{call}
print(time.perf_counter() - t)
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
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(windows)
        times.append(time.perf_counter() - t)
    return min(times)


def first_call(call: str) -> float:
    code = FIRST_CALL.format(n=P.segment_samples, call=call)
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=REPO).stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("GENRETAG_SHARED_DIR", REPO.parent / "shared"))
    parser.add_argument("--clip", default=str(shared / "gtzan" / "blues" / "blues.00000.opus"))
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    y = audio.load(args.clip, P.sr)
    starts = np.linspace(0, len(y) - P.segment_samples, 20).astype(int)
    windows = np.stack([y[s: s + P.segment_samples] for s in starts])
    base, ours = librosa_mfcc(windows), features.mfcc(windows, P)  # also warms both up
    librosa_batched(windows)
    t_batched = best_of(librosa_batched, windows, args.repeats)
    t_base = best_of(librosa_mfcc, windows, args.repeats)
    t_ours = best_of(lambda w: features.mfcc(w, P), windows, args.repeats)
    print(f"20 windows of {Path(args.clip).name}, best of {args.repeats}:")
    print(f"  librosa.feature.mfcc per window  {t_base * 1e3:7.1f} ms")
    print(f"  librosa.feature.mfcc batched     {t_batched * 1e3:7.1f} ms   (batch floor: not per segment)")
    print(f"  features.mfcc (float32, scipy)   {t_ours * 1e3:7.1f} ms   ratio {t_base / t_ours:.2f}x per window,"
          f" {t_batched / t_ours:.2f}x batched")
    print(f"  max |ours - librosa|             {np.abs(base - ours).max():.2e}")
    w_base = first_call("import librosa; librosa.feature.mfcc(y=y, sr=22050, n_mfcc=13, n_fft=2048, hop_length=512)")
    w_ours = first_call("from genretag import features; features.mfcc(y[None, :], features.MFCC)")
    print(f"first call in a fresh process, import included: librosa {w_base:.2f} s, ours {w_ours:.2f} s")


if __name__ == "__main__":
    main()
