"""The PyAV decoder against the one it replaced (bench/legacy_decode.py), on real audio, in one run each.

    python bench/decode.py m4a     [--library ../music-full] [--tracks 20] [--cache DIR]
    python bench/decode.py drift   [--library ../music-full] [--limit N]
    python bench/decode.py staged  [--library ../music-full]
    python bench/decode.py gtzan   [--gtzan ../shared/gtzan]

* ``m4a``: 20 long library tracks encoded to m4a with PyAV's AAC encoder (cached), then what the
  staged vote decodes of each (probe + 20 windows) with ours, in a process whose PATH holds only
  the virtualenv, against the old path: two whole-file ``ffmpeg`` decodes (needs an ffmpeg
  program for the baseline only: ``apt-get install -y ffmpeg``). Also the level of the old
  path's windows against ours (its ``-ac 1`` downmix).
* ``drift``: where each window of a long Vorbis track lands, against a full decode by the same
  decoder, for libsndfile's seeking (the old path) and ours; 60 windows per track in the staged
  vote's stages (one open file per stage, sought once per window).
* ``staged``: decode-only CPU per long track of the staged plan (probe, then the first three
  stages: 10, 4 and 6 windows, about the 19.5 windows the vote hears on average), old against ours.
* ``gtzan``: the valid-split clips decoded the old way (libsndfile + soxr HQ) and ours (PyAV +
  soxr HQ, and soxr MQ): MFCC differences, segments and clips whose genre changes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import legacy_decode as legacy  # noqa: E402
from genretag import audio  # noqa: E402
from genretag.classify import plan_windows, stage_ends  # noqa: E402
from genretag.config import Settings  # noqa: E402
from genretag.features import FEATURES  # noqa: E402

SR, SEG = FEATURES.sr, FEATURES.segment_seconds
SETTINGS = Settings()


def long_tracks(library: Path, min_seconds: float = 60.0) -> list[tuple[str, audio.AudioInfo]]:
    out = []
    for p in sorted(library.rglob("*")):
        if p.is_file() and p.suffix.lower() in audio.AUDIO_EXTENSIONS:
            try:
                info = audio.probe(p)
            except audio.AudioError:
                continue
            if info.duration >= min_seconds:
                out.append((str(p), info))
    return out


def stages(duration: float, n_stages: int | None = None) -> list[list[float]]:
    """The staged plan's windows, stage by stage, each stage's starts sorted (as classify.prepare asks)."""
    starts = plan_windows(duration, SETTINGS)
    ends = stage_ends(len(starts), SETTINGS)[:n_stages]
    return [sorted(starts[a:b]) for a, b in zip([0, *ends[:-1]], ends)]


# --- m4a: windowed decode against two whole-file ffmpeg decodes ----------------------------------


def make_m4a(tracks: list[tuple[str, audio.AudioInfo]], dest: Path, n: int) -> list[str]:
    """The first ``n`` tracks of 1-4 minutes, decoded (stereo, native rate) and encoded as AAC in m4a
    (the encoder's fast coder: its default two-loop search runs near real time on a loaded machine)."""
    import av
    import soxr

    from media import encode

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for path, info in tracks:
        if not 60 <= info.duration <= 240:
            continue
        target = dest / (Path(path).stem + ".m4a")
        if not target.exists():
            try:
                with av.open(path) as f:
                    stream = f.streams.audio[0]
                    frames = [fr.to_ndarray() if fr.format.is_planar else fr.to_ndarray().reshape(-1, fr.layout.nb_channels).T
                              for fr in f.decode(stream)]
            except av.FFmpegError:  # one of the few files only libsndfile reads
                continue
            y = np.concatenate(frames, axis=1).astype(np.float32)
            y = np.stack([y[0], y[-1]], axis=1)
            if stream.codec_context.sample_rate != 44100:
                y = soxr.resample(y, stream.codec_context.sample_rate, 44100).astype(np.float32)
            encode(y, 44100, target, "m4a", aac_coder="fast")
        out.append(str(target))
        if len(out) == n:
            break
    return out


def ours_m4a(paths: list[str]) -> tuple[float, float, list[np.ndarray]]:
    """In a child whose PATH holds only the virtualenv: wall and CPU s of probe + 20 windows per file."""
    os.environ["PATH"] = str(Path(sys.executable).parent)
    assert shutil.which("ffmpeg") is None
    windows = []
    audio.load_windows(paths[0], [1.0], SEG, SR)  # warm the libraries
    wall, cpu = time.perf_counter(), time.process_time()
    for p in paths:
        info = audio.probe(p)
        windows.append(audio.load_windows(p, sorted(plan_windows(info.duration, SETTINGS)[:20]), SEG, SR))
    return time.perf_counter() - wall, time.process_time() - cpu, windows


def bench_m4a(args: argparse.Namespace) -> None:
    if shutil.which("ffmpeg") is None:
        sys.exit("the baseline needs an ffmpeg program: apt-get install -y ffmpeg (never a product dependency)")
    paths = make_m4a(long_tracks(args.library), args.cache, args.tracks)
    hours = sum(audio.probe(p).duration for p in paths) / 3600
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        wall_new, cpu_new, new = pool.submit(ours_m4a, paths).result()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu = time.perf_counter(), time.process_time()
    old = []
    for p in paths:
        duration, _ = legacy.ffmpeg_windows(p, [0.0], SEG, SR)  # the old probe: a whole decode
        old.append(legacy.ffmpeg_windows(p, sorted(plan_windows(duration, SETTINGS)[:20]), SEG, SR)[1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall_old = time.perf_counter() - wall
    cpu_old = time.process_time() - cpu + (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    level = [20 * np.log10(np.sqrt(np.mean(o ** 2)) / np.sqrt(np.mean(w ** 2))) for o, w in zip(old, new)]
    n = len(paths)
    print(f"{n} m4a tracks ({hours:.2f} h, AAC 128 kb/s stereo 44.1 kHz, made with PyAV from {args.library}); "
          f"probe + 20 windows of 3 s each; load average {os.getloadavg()[0]:.1f}")
    print(f"  old: 2 whole-file ffmpeg decodes  wall {wall_old / n:.3f} s/file  CPU {cpu_old / n:.3f} s/file")
    print(f"  ours: PyAV, seeking (no ffmpeg on PATH)  wall {wall_new / n:.3f} s/file  CPU {cpu_new / n:.3f} s/file")
    print(f"  ratio: wall {wall_old / wall_new:.1f}x, CPU {cpu_old / cpu_new:.1f}x (target >= 5x)")
    print(f"  old windows' level against ours: {np.mean(level):+.2f} dB (min {min(level):+.2f}, max {max(level):+.2f})")


# --- Vorbis drift: where the windows land -------------------------------------------------------


def lag(full: np.ndarray, window: np.ndarray, at: int, reach: int = 4410) -> int | None:
    """Offset (samples) of ``window`` from ``at`` in ``full``, by normalised cross-correlation over
    +-``reach``; ``None`` when the window is (nearly) silent there."""
    from scipy.signal import correlate

    skip, n = 2205, 16384
    core = window[skip: skip + n]
    lo = at + skip - reach
    if lo < 0 or np.sqrt(np.mean(core ** 2)) < 1e-3:
        return None
    region = full[lo: at + skip + n + reach]
    if len(region) < n + 2 * reach:
        return None
    num = correlate(region, core, mode="valid", method="fft")
    energy = np.convolve(region ** 2, np.ones(n), mode="valid")
    return int(np.argmax(num / np.sqrt(np.maximum(energy, 1e-12)))) - reach


def drift_of(job: tuple[str, float]) -> tuple[str, list[int | None], list[int | None]]:
    """Lags of every planned window of one track: libsndfile's old seeking, and ours."""
    path, duration = job
    plan = stages(duration)
    result = []
    for load, windows in ((legacy.sf_load, legacy.sf_windows), (audio.load, audio.load_windows)):
        full = load(path, SR)
        lags = []
        for starts in plan:
            for start, w in zip(starts, windows(path, starts, SEG, SR)):
                lags.append(lag(full, w, round(start * SR)))
        result.append(lags)
    return path, result[0], result[1]


def bench_drift(args: argparse.Namespace) -> None:
    tracks = [(p, i.duration) for p, i in long_tracks(args.library) if i.format == "OGG/VORBIS"][: args.limit or None]
    with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn")) as pool:
        rows = list(pool.map(drift_of, tracks))
    print(f"{len(rows)} long Vorbis tracks (>= 60 s) of {args.library}; 60 windows each in the staged vote's stages; "
          "lag against a full decode by the same decoder (1 ms = 22 samples at 22,050 Hz)")
    for name, pick in (("libsndfile (old)", 1), ("ours (PyAV)", 2)):
        lags = [abs(x) for row in rows for x in row[pick] if x is not None]
        off = [x for x in lags if x > 22]
        tracks_off = sum(any(abs(x) > 22 for x in row[pick] if x is not None) for row in rows)
        print(f"  {name:<17} {len(off)}/{len(lags)} windows ({len(off) / max(1, len(lags)):.1%}) off by > 1 ms, "
              f"in {tracks_off}/{len(rows)} tracks; largest {max(lags, default=0) / SR * 1000:.0f} ms")


# --- staged plan: decode CPU per long track -----------------------------------------------------


def staged_cpu(job: tuple[str, float]) -> tuple[float, float]:
    """CPU s of the staged plan's decoding for one track: old (libsndfile + soxr HQ), ours."""
    path, duration = job
    Path(path).read_bytes()  # both read it from the page cache
    plan = stages(duration, 3)
    t0 = time.process_time()
    legacy.sf_probe(path)
    for starts in plan:
        legacy.sf_windows(path, starts, SEG, SR)
    t1 = time.process_time()
    audio.probe(path)
    for starts in plan:
        audio.load_windows(path, starts, SEG, SR)
    return t1 - t0, time.process_time() - t1


def bench_staged(args: argparse.Namespace) -> None:
    tracks = [(p, i.duration) for p, i in long_tracks(args.library)]
    staged_cpu(tracks[0])  # warm both libraries
    rows = [staged_cpu(t) for t in tracks]
    old, new = (np.array(c) for c in zip(*rows))
    print(f"{len(rows)} long tracks (>= 60 s) of {args.library}; probe + stages of 10, 4 and 6 windows; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  decode-only CPU per long track: old (libsndfile + soxr HQ) {old.mean():.3f} s, "
          f"ours (PyAV + soxr HQ) {new.mean():.3f} s: {old.mean() / new.mean():.2f}x; "
          f"median {np.median(old):.3f} / {np.median(new):.3f} s")


# --- GTZAN: genres under the decoder and resampler change -------------------------------------


def bench_gtzan(args: argparse.Namespace) -> None:
    import soxr

    from genretag import features
    from genretag.model import Predictor, configure_tensorflow, load_bundle

    sys.path.insert(0, str(REPO / "bench"))
    from agreement import gtzan_valid

    configure_tensorflow(1)
    bundle = load_bundle(SETTINGS.model_path)
    predict = Predictor(bundle)
    clips = gtzan_valid(args.gtzan)
    cpu = {"HQ": 0.0, "MQ": 0.0}
    maps, probs = {}, {}
    for path, _ in clips:
        native = audio.probe(path).samplerate
        y = {"old": legacy.sf_load(path, SR)}
        t = time.process_time()
        y["HQ"] = audio.load(path, SR)
        cpu["HQ"] += time.process_time() - t
        t = time.process_time()
        raw = audio.load(path, native)  # no resampling at the native rate
        y["MQ"] = soxr.resample(raw, native, SR, quality="MQ").astype(np.float32)
        cpu["MQ"] += time.process_time() - t
        for k, v in y.items():
            maps.setdefault(k, []).append(features.extract(v, bundle.features))
    for k in maps:
        probs[k] = [predict(m) for m in maps[k]]
    spread = float(np.std(np.concatenate(maps["old"])))
    print(f"{len(clips)} GTZAN valid-split clips (Opus); model {bundle.version}; MFCC spread (std) {spread:.1f}")
    for a, b in (("old", "HQ"), ("HQ", "MQ"), ("old", "MQ")):
        diff = max(float(np.max(np.abs(x - y))) if len(x) == len(y) else np.inf for x, y in zip(maps[a], maps[b]))
        seg = [(pa.argmax(1) != pb.argmax(1)).sum() for pa, pb in zip(probs[a], probs[b])]
        clip = sum(pa.mean(0).argmax() != pb.mean(0).argmax() for pa, pb in zip(probs[a], probs[b]))
        pmax = max(float(np.max(np.abs(pa - pb))) for pa, pb in zip(probs[a], probs[b]))
        print(f"  {a:>3} vs {b}: max |MFCC diff| {diff:.3g}; max |prob diff| {pmax:.3g}; "
              f"segments whose genre flips {sum(seg)}/{sum(len(p) for p in probs[a])}; clips {clip}/{len(clips)}")
    print(f"  decode CPU per clip: PyAV + soxr HQ {cpu['HQ'] / len(clips) * 1000:.1f} ms, "
          f"+ soxr MQ {cpu['MQ'] / len(clips) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("m4a", "drift", "staged", "gtzan"))
    parser.add_argument("--library", type=Path, default=REPO.parent / "music-full")
    parser.add_argument("--gtzan", type=Path, default=REPO.parent / "shared" / "gtzan")
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/genretag-bench-m4a"))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    {"m4a": bench_m4a, "drift": bench_drift, "staged": bench_staged, "gtzan": bench_gtzan}[args.what](args)


if __name__ == "__main__":
    main()
