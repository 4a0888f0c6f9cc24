"""Peak memory and time of ``genretag export``: rows streamed with ``yield_per`` against all rows fetched at once.

Seeds a throwaway PostgreSQL schema (or SQLite file) with N tracks, each with a prediction (10-genre
probabilities and votes), then exports it to CSV twice, each in a fresh process so that peak RSS
(``ru_maxrss``, which counts the driver's buffers too) belongs to one variant:

* baseline: the same SELECT, ``.all()`` rows in memory, then written;
* ours: :func:`genretag.db.queries.find_tracks` (server-side cursor on PostgreSQL, ``yield_per``).

    python bench/export_memory.py [--tracks 50000] [--database postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PG_BASE_URL = os.environ.get("GENRETAG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def seed(url: str, n: int) -> None:
    """N tracks with one prediction each, written in batches through the store and the ORM."""
    from sqlalchemy import insert

    from genretag.db import Prediction, session_scope
    from genretag.db import store

    batch = 5000
    for start in range(0, n, batch):
        with session_scope(url) as s:
            scan = store.start_scan(s, "/bench", "v1", "local")
            rows = [{"path": f"/bench/artist {i // 100:04d}/track {i:07d}.mp3", "size": 4_000_000 + i, "mtime": 1.7e9}
                    for i in range(start, min(n, start + batch))]
            ids = store.insert_tracks(s, rows, scan.id)
            preds = []
            for k, track_id in enumerate(ids.values()):
                genre = GENRES[k % len(GENRES)]
                probs = {g: (0.55 if g == genre else 0.05) for g in GENRES}
                votes = {g: (6 if g == genre else (4 if g == "rock" and genre != "rock" else 0)) for g in GENRES}
                preds.append({"track_id": track_id, "model_version": "bench-v1", "genre": genre, "confidence": 0.6,
                              "mean_probability": 0.55, "probabilities": probs, "votes": votes,
                              "segments_used": 10, "segment_mode": "spread"})
            s.execute(insert(Prediction), preds)


def export(url: str, variant: str, out: str) -> tuple[int, float]:
    """One export; returns (rows, seconds)."""
    from genretag.db import session_factory
    from genretag.db.queries import EXPORT_FIELDS, TrackFilter, TrackRow, find_tracks, track_query
    from genretag.formats import write_csv

    t0 = time.perf_counter()
    with session_factory(url)() as session, open(out, "w", encoding="utf-8") as stream:
        if variant == "baseline":
            rows = session.execute(track_query(TrackFilter())).all()
            count = write_csv((TrackRow(**r._mapping).full() for r in rows), EXPORT_FIELDS, stream)
        else:
            count = write_csv((r.full() for r in find_tracks(session)), EXPORT_FIELDS, stream)
    return count, time.perf_counter() - t0


def child(url: str, variant: str, out: str) -> None:
    from genretag.db import get_engine

    get_engine(url)  # migrations and imports before the baseline RSS reading
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count, seconds = export(url, variant, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{count} {seconds:.3f} {before} {peak}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=50_000)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--child", nargs=3, metavar=("URL", "VARIANT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from sqlalchemy import create_engine, text

    tmp = Path(tempfile.mkdtemp(prefix="genretag-bench-"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = None
    if args.database == "postgresql":
        admin = create_engine(PG_BASE_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    try:
        t0 = time.perf_counter()
        seed(url, args.tracks)
        print(f"seeded {args.tracks} tracks with predictions in {time.perf_counter() - t0:.1f} s ({args.database})")
        results = {}
        for variant in ("baseline", "streamed"):
            out = subprocess.run([sys.executable, __file__, "--child", url, variant, str(tmp / f"{variant}.csv")],
                                 check=True, capture_output=True, text=True).stdout.split()
            count, seconds, before, peak = int(out[0]), float(out[1]), int(out[2]), int(out[3])
            results[variant] = (seconds, (peak - before) / 1024, peak / 1024)
            print(f"{variant:<9} {count} rows in {seconds:6.2f} s, peak RSS +{(peak - before) / 1024:7.1f} MiB "
                  f"(total {peak / 1024:.0f} MiB)")
        same = (tmp / "baseline.csv").read_bytes() == (tmp / "streamed.csv").read_bytes()
        (bt, bm, bp), (st, sm, sp) = results["baseline"], results["streamed"]
        # The streamed export may stay under the start-up peak, so its growth can read 0: compare totals too.
        print(f"identical output: {same}; peak RSS baseline/streamed = {bp / sp:.2f}x ({bp:.0f} vs {sp:.0f} MiB), "
              f"growth +{bm:.1f} vs +{sm:.1f} MiB; time streamed/baseline = {st / bt:.2f}x")
    finally:
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
