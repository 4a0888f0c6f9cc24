"""Throughput on a real library: the naive pipeline against genretag, in one run.

Modes (each in a fresh process, so memory and interpreter state never leak between them):

* ``naive``      baseline, not the product: ``librosa.load`` of the whole file, MFCC of every 3-s
                 segment one by one, Keras ``model.predict`` per track (TensorFlow) of the MFCC CNN;
                 one process, as such scripts run. The issue's ratios are against this one.
* ``naive-own``  the same script with each of our bundles' own network and feature kind (musicnn:
                 its own extractor's patches of the whole file), so a bundle's engineering is also
                 measured against the naive pipeline of the same model (column ``x own``).
* ``direct``     genretag's own path in process: ``classify.prepare`` in a pool of decode processes
                 while the main process runs ``Classifier.decide`` on batches (overlap of I/O and
                 compute), and ``direct-serial`` the same without overlap (decode a batch, wait,
                 infer it); the pair shows what the overlap is worth.
* ``decode``     the decode-only limit of the same plan: replays, in as many processes, exactly the
                 decoder calls (probe, windows, whole files) that the ``direct`` run before it made,
                 and nothing else (no MFCC, no inference); each mode's share of that limit is printed.
* ``local``      ``genretag scan`` in local mode on a temporary SQLite file (the product command).
* ``celery``     ``genretag scan`` enqueueing to a real Celery worker subprocess (2 processes) on a
                 dedicated Redis db, results in a temporary SQLite file.

Printed per mode: tracks/s, audio hours per hour, ratio against naive, CPU s per classified track
and the share of it spent decoding (where the mode can be instrumented), and each process's peak RSS.
``--model default cnn`` runs our modes once per bundle (a file or a shipped name), each row
named by its bundle; naive runs once, the MFCC CNN's pipeline, the baseline every bundle is
measured against. ``--memory`` also
runs the memory check: one Celery worker process classifying 100 real tracks ten times over,
its RSS after each 100 classifications; then the same for the old product (Keras on TensorFlow,
bench/baseline.py) over ``--baseline-scans`` rounds.

    python bench/throughput.py [--library ../music-full] [--limit N] [--modes naive direct ...]
                               [--model default cnn] [--memory]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import baseline

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the naive mode and the old product load TensorFlow

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LIBRARY = REPO.parent / "music-full"
MODES = ("naive", "naive-own", "direct", "direct-serial", "decode", "local", "celery")


@dataclass
class Run:
    """What one mode did: wall time, tracks, time split, peak RSS per process (MB)."""

    mode: str
    model: str = ""  # our bundle's name; empty for naive
    wall: float = 0.0
    tracks: int = 0
    failed: int = 0
    decode_seconds: float = 0.0  # summed over processes
    busy_seconds: float = 0.0  # CPU s in decode + features + inference, summed over processes; 0 if unknown
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    note: str = ""
    decoder_calls: dict[str, list] = field(default_factory=dict)  # path -> [(name, args)], what ``prepare`` asked


# --- process facts -------------------------------------------------------------------------------


def status_kb(pid: int | str, key: str) -> float:
    """A ``/proc/<pid>/status`` field in kB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return 0.0


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        out.extend(int(k) for k in kids)
    return out


def audio_files(root: Path) -> list[str]:
    from genretag.audio import AUDIO_EXTENSIONS

    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def durations(paths: Sequence[str]) -> dict[str, float]:
    from genretag.audio import AudioError, probe

    out = {}
    for p in paths:
        try:
            out[p] = probe(p).duration
        except AudioError:
            out[p] = 0.0
    return out


# --- naive baseline ------------------------------------------------------------------------------

NAIVE_MODEL = "cnn.genretag"  # the MFCC CNN: the naive pipeline is the seed's MFCC path, whatever our default is


def naive_maps(y: "np.ndarray", params) -> "np.ndarray":
    """Every whole segment's features of a whole decoded file, the way a script would get them: the seed's
    MFCC segment by segment, or musicnn's own extractor (the whole file's log-mel, cut into non-overlapping
    187-frame patches)."""
    import librosa
    import numpy as np

    if params.kind == "musicnn":
        mel = librosa.feature.melspectrogram(y=y, sr=params.sr, hop_length=params.hop_length, n_fft=params.n_fft,
                                             n_mels=params.n_mels).T.astype(np.float32)
        logmel = np.log10(10000 * mel + 1)
        return np.array([logmel[t: t + params.n_frames] for t in range(0, len(logmel) - params.n_frames + 1,
                                                                         params.n_frames)], np.float32)
    n = params.segment_samples
    maps = [librosa.feature.mfcc(y=y[i * n: (i + 1) * n], sr=params.sr, n_mfcc=params.n_mfcc, n_fft=params.n_fft,
                                 hop_length=params.hop_length).T for i in range(len(y) // n)]
    return np.array([m for m in maps if len(m) == params.n_frames], np.float32)


def run_naive(paths: Sequence[str], model_path: str, threads: int) -> Run:
    """The seed script's way, with the bundle's own network: decode everything, every segment's features,
    ``model.predict`` per track (Keras on TensorFlow)."""
    import librosa

    from genretag.bundle import load_bundle
    from genretag.training.export import keras_model
    from genretag.training.networks import configure_tensorflow

    configure_tensorflow(threads)
    bundle = load_bundle(model_path)
    model = keras_model(bundle)
    run = Run("naive", Path(model_path).stem)
    t0 = time.perf_counter()
    for path in paths:
        a = time.process_time()
        try:
            y, _ = librosa.load(path, sr=bundle.features.sr, mono=True)
        except Exception:  # noqa: BLE001 - the naive script skips what it cannot read
            run.failed += 1
            continue
        run.decode_seconds += time.process_time() - a
        maps = naive_maps(y, bundle.features)
        if len(maps):
            model.predict(bundle.normalise(maps), verbose=0)
            run.tracks += 1
        else:
            run.failed += 1
        run.busy_seconds += time.process_time() - a
    run.wall = time.perf_counter() - t0
    run.peak_rss_mb["main"] = status_kb("self", "VmHWM") / 1024
    return run


# --- genretag in process: prepare in a pool, decide in batches -----------------------------------


_decode_seconds = 0.0
_decoder_calls: list = []


def _timed(fn: Callable) -> Callable:
    def wrapper(*args, **kwargs):
        global _decode_seconds
        _decoder_calls.append((fn.__name__, args, kwargs))
        t0 = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _decode_seconds += time.process_time() - t0

    return wrapper


def _instrument_decoding() -> None:
    """Pool initializer: count CPU time inside the decoder entry points that ``prepare`` calls; one BLAS
    thread, as local mode's decoders have."""
    from genretag import audio, features

    features.one_blas_thread()
    for name in ("probe", "load", "load_windows"):
        setattr(audio, name, _timed(getattr(audio, name)))


def _prepare_timed(job: tuple[str, object, object, object]) -> tuple[object | None, float, float, list]:
    """(PreparedTrack or None, decode CPU s, total CPU s, decoder calls made) for one file's next stage."""
    from genretag.audio import AudioError
    from genretag.classify import prepare

    global _decode_seconds
    path, settings, params, after = job
    _decode_seconds = 0.0
    _decoder_calls.clear()
    t0 = time.process_time()
    try:
        track = prepare(path, settings, params, after)
    except AudioError:
        track = None
    return track, _decode_seconds, time.process_time() - t0, list(_decoder_calls)


def run_direct(paths: Sequence[str], settings, overlap: bool) -> Run:
    """``prepare`` in ``settings.worker_count`` processes; ``decide`` in batches in this one, on every
    core as in local mode (``threads_alone``).

    Tracks whose staged vote stays open go round again for their next stage.
    """
    from genretag.classify import Classifier, Unsettled

    run = Run("direct" if overlap else "direct-serial")
    ctx = mp.get_context("spawn")  # decode processes never inherit the interpreter's threads
    with ProcessPoolExecutor(settings.worker_count, mp_context=ctx, initializer=_instrument_decoding) as pool:
        list(pool.map(time.sleep, [0.2] * settings.worker_count))  # start the processes before timing
        classifier = Classifier.load(settings, threads=settings.threads_alone)
        classifier.decide([])
        infer = 0.0
        t0 = time.perf_counter()
        pending: list = [(p, settings, classifier.bundle.features, None) for p in paths]
        batch: list = []
        again: list = []

        def flush() -> None:
            nonlocal infer
            if batch:
                a = time.process_time()
                for outcome in classifier.decide(batch):
                    if isinstance(outcome, Unsettled):
                        again.append((outcome.path, settings, classifier.bundle.features, outcome))
                    else:
                        run.tracks += 1
                infer += time.process_time() - a
                batch.clear()

        size = settings.batch_tracks
        while pending:
            chunks = [pending] if overlap else [pending[i: i + size] for i in range(0, len(pending), size)]
            for chunk in chunks:
                for (path, *_), (track, decode_s, total_s, calls) in zip(chunk, pool.map(_prepare_timed, chunk)):
                    run.decoder_calls.setdefault(path, []).extend(calls)
                    run.decode_seconds += decode_s
                    run.busy_seconds += total_s
                    if track is None:
                        run.failed += 1
                        continue
                    batch.append(track)
                    if len(batch) >= size:
                        flush()
                flush()
            pending, again = again, []
        run.wall = time.perf_counter() - t0
        run.busy_seconds += infer
        for i, pid in enumerate(pool._processes):  # noqa: SLF001 - the pids, to read their peak RSS
            run.peak_rss_mb[f"decoder{i + 1}"] = status_kb(pid, "VmHWM") / 1024
    run.peak_rss_mb["main"] = status_kb("self", "VmHWM") / 1024
    run.note = f"{settings.worker_count} decode processes, batches of {size} tracks, LiteRT {settings.threads_alone} thread(s)"
    return run


# --- decode-only limit: the same decoder calls, nothing else -------------------------------------


def _decode_only(calls: list) -> float:
    """CPU s of one file's decoder calls, replayed as ``prepare`` made them (failures included)."""
    from genretag import audio

    t0 = time.process_time()
    for name, args, kwargs in calls:
        try:
            getattr(audio, name)(*args, **kwargs)
        except audio.AudioError:
            pass
    return time.process_time() - t0


def run_decode_only(calls: dict[str, list], workers: int) -> Run:
    """The decode-only limit of the staged plan: ``workers`` processes decoding what ``direct`` decoded."""
    run = Run("decode")
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(time.sleep, [0.2] * workers))
        list(pool.map(_decode_only, [next(iter(calls.values()))] * workers))  # import PyAV and soxr in each
        t0 = time.perf_counter()
        cpu = list(pool.map(_decode_only, calls.values()))
        run.wall = time.perf_counter() - t0
        for i, pid in enumerate(pool._processes):  # noqa: SLF001
            run.peak_rss_mb[f"decoder{i + 1}"] = status_kb(pid, "VmHWM") / 1024
    run.tracks = len(calls)
    run.decode_seconds = run.busy_seconds = sum(cpu)
    run.note = (f"{workers} processes, {sum(len(c) for c in calls.values())} decoder calls of the direct run "
                "(probe, windows, whole files); no MFCC, no inference")
    return run


# --- the product commands ------------------------------------------------------------------------


def vote_env(settings) -> dict[str, str]:
    """The settings that choose the voting segments, for a product subprocess."""
    return {"GENRETAG_SEGMENTS": settings.segments, "GENRETAG_WINDOWS": str(settings.windows),
            "GENRETAG_FIRST_WINDOWS": str(settings.first_windows), "GENRETAG_VOTE_Z": str(settings.vote_z)}


def run_scan(paths_root: Path, mode: str, settings, redis_url: str) -> Run:
    """``genretag scan`` on a temporary SQLite file, locally or through a Celery worker subprocess."""
    run = Run(mode)
    tmp = Path(tempfile.mkdtemp(prefix=f"genretag-bench-{mode}-"))
    env = {**os.environ, "GENRETAG_DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
           "GENRETAG_WORKERS": str(settings.worker_count), "GENRETAG_MODEL_PATH": str(settings.model_path),
           **vote_env(settings),
           "GENRETAG_FOLLOW_SYMLINKS": "1"}  # --limit links files
    worker = None
    if mode == "celery":
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        env["GENRETAG_BROKER_URL"] = redis_url
        worker = subprocess.Popen([sys.executable, "-m", "genretag.cli", "worker", "--loglevel", "warning"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "worker.log", "w"))
        _wait_for_workers(worker.pid, settings.worker_count, timeout=120)
    scan = [sys.executable, "-m", "genretag.cli", "scan", str(paths_root)]
    t0 = time.perf_counter()
    peak: dict[int, float] = {}
    proc = subprocess.Popen(scan, env=env, stdout=open(tmp / "scan.log", "w"), stderr=subprocess.STDOUT)
    watched = worker.pid if worker else proc.pid
    while proc.poll() is None:
        for pid in [watched, *children(watched)]:
            try:
                if pid == watched or b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    peak[pid] = max(peak.get(pid, 0.0), status_kb(pid, "VmHWM") / 1024)
            except (FileNotFoundError, ProcessLookupError):
                pass
        time.sleep(0.2)
    run.wall = time.perf_counter() - t0
    if worker:
        worker.terminate()
        worker.wait(30)
    if proc.returncode != 0:
        run.note = f"scan exited {proc.returncode}; see {tmp / 'scan.log'}"
    counts = _db_counts(env["GENRETAG_DATABASE_URL"])
    run.tracks, run.failed = counts
    run.peak_rss_mb = {("main" if pid == watched else f"child{i}"): mb for i, (pid, mb) in enumerate(peak.items())}
    run.note = (run.note or "wall includes process start and model load") + f"; db {tmp}"
    return run


def _wait_for_workers(pid: int, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(children(pid)) < n:
        time.sleep(0.5)
    time.sleep(3)  # let the pool processes load the model


def _db_counts(url: str) -> tuple[int, int]:
    """(classified, failed) tracks in a scan's database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        ok = conn.execute(text("SELECT count(*) FROM predictions")).scalar_one()
        bad = conn.execute(text("SELECT count(*) FROM tracks WHERE status = 'failed'")).scalar_one()
    engine.dispose()
    return int(ok), int(bad)


# --- memory check --------------------------------------------------------------------------------


def memory_check(paths: Sequence[str], lengths: dict[str, float], settings, redis_url: str, label: str,
                 per_scan: int = 100, scans: int = 10, base_env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> list[tuple[int, float, int]]:
    """RSS of the one process of a Celery worker (concurrency 1) after every ``per_scan`` classifications.

    The worker classifies ``per_scan`` real tracks (at least 5 s long) again and again through
    ``genretag scan --force``, so it runs the product's task path, database writes included;
    ``base_env`` and ``cwd`` (``baseline.env()``, ``baseline.tree()``) run the old product instead. Each figure is printed as it
    comes, under ``label``. Returns (classifications so far, RSS MB, pid of the pool process) after each scan.
    """
    import re

    import redis

    chosen = [p for p in paths if lengths[p] >= 5.0][:per_scan]
    tmp = Path(tempfile.mkdtemp(prefix="genretag-bench-memory-"))
    lib = tmp / "library"
    lib.mkdir()
    for i, p in enumerate(chosen):
        (lib / f"{i:04d}-{Path(p).name}").symlink_to(p)
    env = {**(base_env or os.environ), "GENRETAG_DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
           "GENRETAG_WORKERS": "1", "GENRETAG_BROKER_URL": redis_url, "GENRETAG_FOLLOW_SYMLINKS": "1",
           **vote_env(settings)}
    if base_env is None:  # ours: the bundle asked for (the old product reads only its own format-1 bundle)
        env["GENRETAG_MODEL_PATH"] = str(settings.model_path)
    redis.Redis.from_url(redis_url).flushdb()
    worker = subprocess.Popen([sys.executable, "-m", "genretag.cli", "worker", "--loglevel", "warning"],
                              env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=open(tmp / "worker.log", "w"))
    out = []
    try:
        _wait_for_workers(worker.pid, 1, timeout=120)
        done = 0
        for _ in range(scans):
            proc = subprocess.run([sys.executable, "-m", "genretag.cli", "scan", "--force", str(lib)], env=env,
                                  cwd=cwd, capture_output=True, text=True, check=True)
            found = re.search(r"(\d+) done, (\d+) failed", proc.stdout + proc.stderr)
            done += int(found.group(1)) + int(found.group(2)) if found else len(chosen)
            (pid,) = children(worker.pid)
            out.append((done, status_kb(pid, "VmRSS") / 1024, pid))
            print(f"  {label}: after {done:>5} classifications: RSS {out[-1][1]:6.0f} MB (pid {pid})", flush=True)
    finally:
        worker.terminate()
        worker.wait(30)
    shutil.rmtree(tmp)
    return out


# --- driver --------------------------------------------------------------------------------------


def in_child(fn: Callable, *args):
    """Run ``fn(*args)`` in a fresh spawned process and return its result."""
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=Path, default=DEFAULT_LIBRARY)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (quick checks)")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES), help="none: the memory check only")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="also the 100 / 1,000 classifications RSS check")
    parser.add_argument("--scans", type=int, default=10, help="rounds of 100 classifications for our RSS")
    parser.add_argument("--baseline-scans", type=int, default=2, help="rounds of 100 for the old product's RSS")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13", help="a Redis db used only by this bench")
    parser.add_argument("--model", type=Path, nargs="+", default=[None],
                        help="our bundles, each a file or a shipped name, e.g. 'default cnn'; every mode "
                        "of ours runs once per bundle [default: GENRETAG_MODEL_PATH or the default bundle]; naive "
                        "runs once, with the default MFCC CNN")
    args = parser.parse_args()

    from genretag.config import PACKAGED_MODELS, get_settings

    base = get_settings().replace(workers=args.workers)
    models = [base.replace(model_path=m) for m in args.model]
    paths = audio_files(args.library.resolve())[: args.limit or None]
    root = args.library
    if args.limit:  # the scan commands take a folder: link the subset into one
        root = Path(tempfile.mkdtemp(prefix="genretag-bench-lib-"))
        for i, p in enumerate(paths):
            (root / f"{i:04d}-{Path(p).name}").symlink_to(p)
    lengths = durations(paths)
    total_audio = sum(lengths.values())
    print(f"library {args.library}: {len(paths)} files, {total_audio / 3600:.2f} h of audio; "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
          f"models {', '.join(s.model_path.name for s in models)}; segments {base.segments}, K={base.windows}, "
          f"first stage {base.first_windows}, vote_z {base.vote_z:g}", flush=True)

    runs: list[Run] = []
    for settings in models:
        ours: list[Run] = []
        for mode in [m for m in args.modes if not m.startswith("naive")]:
            print(f"  running {mode} ({settings.model_path.name}) ...", file=sys.stderr, flush=True)
            if mode in ("direct", "direct-serial"):
                run = in_child(run_direct, paths, settings, mode == "direct")
            elif mode == "decode":
                plan = next((r.decoder_calls for r in ours if r.decoder_calls), None)
                if plan is None:
                    parser.error("mode decode replays a direct run's decoder calls: put direct before it")
                run = in_child(run_decode_only, plan, settings.worker_count)
            else:
                run = run_scan(root, mode, settings, args.redis_url)
            run.model = settings.model_path.stem
            ours.append(run)
            runs.append(run)
            report(runs, total_audio)  # after every mode: a run cut short keeps what it measured
    naive_models = [PACKAGED_MODELS / NAIVE_MODEL] if "naive" in args.modes else []
    if "naive-own" in args.modes:
        naive_models += [s.model_path for s in models if s.model_path != PACKAGED_MODELS / NAIVE_MODEL]
    for model_path in naive_models:  # last: ours is measured even if naive does not finish
        print(f"  running naive ({model_path.name}) ...", file=sys.stderr, flush=True)
        runs.insert(0, in_child(run_naive, paths, str(model_path), 1))
        report(runs, total_audio)
    if args.memory:
        print("\nmemory check: one Celery worker process (concurrency 1), `genretag scan --force` of 100 real "
              "tracks, repeated", flush=True)
    old = memory_check(paths, lengths, base, args.redis_url, f"old (Keras/TF, {baseline.BASELINE_REF})",
                       scans=args.baseline_scans, base_env=baseline.env(), cwd=baseline.tree()) \
        if args.memory and args.baseline_scans else []
    for settings in models if args.memory else []:
        marks = memory_check(paths, lengths, settings, args.redis_url, f"ours (LiteRT, {settings.model_path.stem})",
                             scans=args.scans)
        first, last = marks[0][1], marks[-1][1]
        print(f"  ours: growth from {marks[0][0]} to {marks[-1][0]}: {100 * (last - first) / first:+.1f}% "
              f"(limit +10%: {'met' if last <= 1.1 * first else 'NOT met'}); RSS {last:.0f} MB "
              f"(limit 200 MB: {'met' if last <= 200 else 'NOT met'})"
              + (f", old {old[0][1]:.0f} MB after {old[0][0]}, ratio {old[0][1] / first:.1f}x" if old else "")
              + f"; same process throughout: {len({pid for _, _, pid in marks}) == 1}")
    if args.limit:
        shutil.rmtree(root)


def report(runs: Sequence[Run], total_audio: float) -> None:
    """One line per mode; every mode handles every file, so audio hours per hour use the library total.

    ``x naive``: against the MFCC CNN's naive pipeline (the issue's baseline); ``x own``: against the naive
    pipeline of the row's own bundle, where it ran.
    """
    naive = {r.model: r for r in runs if r.mode == "naive" and r.wall}
    base = naive.get(Path(NAIVE_MODEL).stem)

    def rate(r: Run) -> float:
        return (r.tracks + r.failed) / r.wall if r.wall else 0.0  # files handled, classified or not

    print()
    print("tracks/s counts every file handled (classified or failed: too short, silent, unreadable)")
    print(f"{'mode':<24}{'tracks':>7}{'failed':>7}{'wall s':>9}{'tracks/s':>9}{'audio h/h':>10}"
          f"{'x naive':>8}{'x own':>7}{'cpu s':>7}{'s/track':>8}{'decode':>8}  peak RSS MB")
    for r in runs:
        ratio = f"{rate(r) / rate(base):.1f}" if base else "-"
        own = f"{rate(r) / rate(naive[r.model]):.1f}" if r.model in naive else "-"
        share = f"{r.decode_seconds / r.busy_seconds:.0%}" if r.busy_seconds else "-"
        cpu = f"{r.busy_seconds:.0f}" if r.busy_seconds else "-"
        per_track = f"{r.busy_seconds / r.tracks:.2f}" if r.busy_seconds and r.tracks else "-"  # CPU s per classified track
        rss = ", ".join(f"{k} {v:.0f}" for k, v in r.peak_rss_mb.items())
        print(f"{(r.mode + ' ' + r.model).strip():<24}{r.tracks:>7}{r.failed:>7}{r.wall:>9.1f}{rate(r):>9.2f}"
              f"{total_audio / r.wall if r.wall else 0:>10.0f}{ratio:>8}{own:>7}{cpu:>7}{per_track:>8}{share:>8}  {rss}")
    for r in runs:
        if r.note:
            print(f"  {(r.mode + ' ' + r.model).strip()}: {r.note}")
    for limit in [r for r in runs if r.mode == "decode" and r.wall]:
        limit_tps = limit.tracks / limit.wall
        print(f"decode-only limit of the plan, {limit.model}: {limit_tps:.2f} tracks/s"
              + (f" ({limit_tps / ((base.tracks + base.failed) / base.wall):.1f}x naive)" if base else "")
              + "; share of it: " + ", ".join(f"{r.mode} {(r.tracks + r.failed) / r.wall / limit_tps:.0%}"
                                              for r in runs if r.wall and r.model == limit.model and r.mode != "decode"))


if __name__ == "__main__":
    main()
