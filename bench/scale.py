"""Stats, report, queries and the producer's walk+diff at a million tracks on PostgreSQL, before vs ours.

Fills a schema of its own with N synthetic tracks (bulk ``INSERT .. SELECT generate_series``): 98% done
with a prediction of the shipped model, 10% of those with an older model's prediction too, 1% failed
(three reasons), pending and missing ones, 60% with a genre tag, 20,000 artist folders, 30 scan runs.
The first ``--files`` tracks are real files: hard links to a few small files in a tree under ``--tree``,
recorded unchanged, so walk+diff measures a nightly rescan's steady state.

"Before" is measured on the schema before migration 0004, with the statements as they were (each
track's latest prediction found by a correlated subquery; two passes for genre and confidence);
then the schema is upgraded to head (timed: 0004's backfill, then the later migrations) and "ours" is
measured with the product's own code.

    nice -n 5 python bench/scale.py [--tracks 1000000] [--files 100000] [--keep | --reuse]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

from sqlalchemy import and_, case, func, select, text
from sqlalchemy.orm import Session, aliased

from genretag.config import PACKAGED_MODEL
from genretag.db import Prediction, Track, TrackStatus
from genretag.db.engine import alembic_config, create
from genretag.db.queries import (
    CONFIDENCE_EDGES,
    STREAM_BATCH,
    TrackFilter,
    TrackRow,
    find_tracks,
    library_stats,
    track_query,
)
from genretag.bundle import read_meta
from genretag.producer.diff import plan_batch
from genretag.producer.scan import DB_BATCH, batched
from genretag.producer.walk import walk

PG_URL = os.environ.get("GENRETAG_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
GENRETAG = Path(sys.executable).with_name("genretag")
STATS_TARGET_S, REPORT_TARGET_S = 2.0, 10.0
GENRE_ARRAY = "ARRAY['blues','classical','country','disco','hiphop','jazz','metal','pop','reggae','rock']"
TAG_ARRAY = "ARRAY['Rock','Hip-Hop','Jazz','Electronic','Alternative','Classical','pop','Metal','Blues','Country']"
STATUS = ("CASE WHEN i % 100 = 7 THEN 'failed' WHEN i % 200 = 11 THEN 'pending' "
          "WHEN i % 200 = 13 THEN 'missing' ELSE 'done' END")
FOLDERS = 20_000


# --- the statements as they were before 0004 -------------------------------------------------


def _latest_join(stmt):
    newer = aliased(Prediction)
    latest_id = (select(newer.id).where(newer.track_id == Track.id)
                 .order_by(newer.created_at.desc(), newer.id.desc()).limit(1).correlate(Track).scalar_subquery())
    return stmt.outerjoin(Prediction, Prediction.id == latest_id)


def confidence_bucket(column):
    """The bucket index as ``library_stats`` grouped by it before: ``i`` for ``edges[i] <= value < edges[i+1]``."""
    inner = CONFIDENCE_EDGES[1:-1]
    return case(*((column < edge, i) for i, edge in enumerate(inner)), else_=len(inner))


def stats_before(session: Session) -> None:
    """``library_stats`` as it was: status counts, then genre and confidence in two passes over the latest join."""
    session.execute(select(Track.status, func.count()).group_by(Track.status)).all()
    done = _latest_join(select(Track.id).select_from(Track)).where(
        Track.status == TrackStatus.done.value, Prediction.id.is_not(None))
    tagged = done.add_columns(Prediction.genre.label("genre"),
                              confidence_bucket(Prediction.confidence).label("bucket")).subquery()
    session.execute(select(tagged.c.genre, func.count()).group_by(tagged.c.genre)).all()
    session.execute(select(tagged.c.bucket, func.count()).group_by(tagged.c.bucket)).all()
    session.execute(select(Track.error, func.count()).where(Track.status == "failed").group_by(Track.error)).all()


def query_before(session: Session, flt: TrackFilter, limit: int | None = None) -> int:
    stmt = track_query(flt)  # ours, for its filters: the same WHERE over the old join
    old = _latest_join(select(*stmt.selected_columns).select_from(Track))
    if stmt.whereclause is not None:
        old = old.where(stmt.whereclause)
    old = old.order_by(Track.path)
    if flt.limit:
        old = old.limit(flt.limit)
    rows = session.execute(old.execution_options(yield_per=STREAM_BATCH))
    return sum(1 for _ in islice((TrackRow(**r._mapping) for r in rows), limit))  # as find_tracks builds them


def query_ours(session: Session, flt: TrackFilter, limit: int | None = None) -> int:
    return sum(1 for _ in islice(find_tracks(session, flt), limit))


# --- filling ----------------------------------------------------------------------------------


def fill(conn, n: int, tree: Path, files: int, version: str) -> None:
    """Tracks, predictions and scan runs in bulk; tracks 1..files are the hard links under ``tree``."""
    st = _seed(tree).stat()
    path = (f"CASE WHEN i <= {files} THEN '{tree}/d' || lpad((i / 1000)::text, 3, '0') || '/t' || "
            "lpad(i::text, 7, '0') || '.mp3' ELSE '/music/artist' || lpad((i % " + str(FOLDERS) + ")::text, 5, '0') "
            "|| '/album' || ((i / " + str(FOLDERS) + ") % 5) || '/track' || lpad(i::text, 7, '0') || '.mp3' END")
    conn.execute(text(f"""
        INSERT INTO tracks (id, path, size, mtime, status, error, attempts, duration, format, last_seen_scan_id,
                            tag_genre, created_at, updated_at)
        SELECT i, {path}, CASE WHEN i <= {files} THEN {st.st_size} ELSE 3000000 + i END,
               CASE WHEN i <= {files} THEN {st.st_mtime!r} ELSE 1.7e9 END, {STATUS},
               CASE WHEN i % 100 = 7 THEN (ARRAY['not a readable audio file (Format not recognised)',
                    'decoding failed (Internal error)', 'silent: no segment above -60 dBFS'])[1 + i % 3] END,
               1, 180 + i % 200, 'MP3', 30,
               CASE WHEN i % 10 < 6 THEN ({TAG_ARRAY})[1 + (i * 7) % 10] END, now(), now()
        FROM generate_series(1, {n}) i"""))
    genre = f"({GENRE_ARRAY})[1 + floor(10 * power(random(), 1.6))::int]"
    probs = "jsonb_build_object(" + ", ".join(
        f"'{g}', round(random()::numeric, 4)" for g in
        ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")) + ")"
    for offset, model, where, age in ((n, "2026.01-old", "i % 10 = 0", "interval '30 days'"),
                                      (0, version, "true", "interval '0 days'")):
        conn.execute(text(f"""
            INSERT INTO predictions (id, track_id, model_version, genre, confidence, vote_share, uncertain,
                                     runner_up, mean_probability, probabilities, votes, segments_used,
                                     segment_mode, created_at)
            SELECT {offset} + i, i, '{model}', g, c, c, c < 0.35, 'rock', c * 0.8, {probs},
                   jsonb_build_object(g, 10), 40, 'spread', now() - {age}
            FROM (SELECT i, {genre} AS g, 0.2 + 0.8 * random() AS c FROM generate_series(1, {n}) i
                  WHERE {STATUS} = 'done' AND {where}) s"""))
    conn.execute(text("SELECT setval(pg_get_serial_sequence('tracks', 'id'), :n)"), {"n": n})
    conn.execute(text("SELECT setval(pg_get_serial_sequence('predictions', 'id'), :n)"), {"n": 2 * n})
    conn.execute(text("""
        INSERT INTO scan_runs (root, model_version, mode, started_at, finished_at, found, new, changed, unchanged,
                               missing, queued, done, failed)
        SELECT '/music', :v, 'celery', now() - (31 - k) * interval '1 day', now() - (31 - k) * interval '1 day'
               + interval '2 hours', :n, CASE WHEN k = 1 THEN :n ELSE 1000 END, 100, :n - 1100, 50, 1100, 1080, 20
        FROM generate_series(1, 30) k"""), {"v": version, "n": n})


LINKS_PER_SEED = 50_000  # ext4 allows 65,000 hard links to one file


def _seed(tree: Path, k: int = 0) -> Path:
    """Real file number ``k``, beside the tree (inside, the walk would find it as a new file)."""
    return tree.with_name(f"{tree.name}-seed{k}.mp3")


def make_tree(root: Path, files: int) -> None:
    """``files`` hard links to small files of one size and mtime, 1,000 per folder (``fill`` names them)."""
    root.mkdir(parents=True, exist_ok=True)
    mtime_ns = 1_700_000_000_123_456_789
    for k in range(files // LINKS_PER_SEED + 1):
        seed = _seed(root, k)
        if not seed.exists():
            seed.write_bytes(b"ID3" + bytes(1000))
            os.utime(seed, ns=(mtime_ns, mtime_ns))
    for i in range(1, files + 1):
        link = root / f"d{i // 1000:03d}" / f"t{i:07d}.mp3"
        if not link.exists():
            link.parent.mkdir(exist_ok=True)
            os.link(_seed(root, i // LINKS_PER_SEED), link)


# --- measuring --------------------------------------------------------------------------------


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def walk_diff(session: Session, root: Path, version: str) -> tuple[float, int]:
    """Seconds for the producer's walk and per-batch diff (a dry run's work), and files seen."""
    def run():
        found = 0
        for batch in batched(walk(root), DB_BATCH):
            plan = plan_batch(session, None, batch, version, False, write=False)
            assert plan.counts["unchanged"] == len(batch), plan.counts
            found += len(batch)
        return found
    return timed(run)


def cli_seconds(url: str, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(GENRETAG), "--database-url", url, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(session: Session, tree: Path, version: str, ours: bool) -> dict[str, float]:
    prefix = TrackFilter(path="/music/artist00042/")
    top = TrackFilter(genre="jazz", limit=50)
    run = query_ours if ours else query_before
    figures = {
        "stats (in process)": timed(lambda: library_stats(session) if ours else stats_before(session))[0],
        "top-50 genre query": timed(lambda: run(session, top))[0],
        "path-prefix query": timed(lambda: run(session, prefix))[0],
        "export, first 100k rows": timed(lambda: run(session, TrackFilter(), 100_000))[0],
    }
    seconds, found = walk_diff(session, tree, version)
    figures["walk+diff files/s"] = found / seconds
    session.rollback()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=100_000, help="real files (hard links) for walk+diff")
    parser.add_argument("--schema", default="genretag_scale")
    parser.add_argument("--tree", type=Path, default=Path(tempfile.gettempdir()) / "genretag-scale-tree")
    parser.add_argument("--keep", action="store_true", help="keep the schema for --reuse")
    parser.add_argument("--reuse", action="store_true", help="skip filling and 'before'; measure ours again")
    args = parser.parse_args()

    version = read_meta(PACKAGED_MODEL)["version"]
    url = f"{PG_URL}?options=-csearch_path%3D{args.schema}"
    admin = create(PG_URL)
    engine = create(url)
    make_tree(args.tree, args.files)
    before: dict[str, float] = {}
    if not args.reuse:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{args.schema}"'))
        from alembic import command

        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")
        seconds, _ = timed(lambda: _in_transaction(engine, lambda c: fill(c, args.tracks, args.tree, args.files, version)))
        print(f"filled {args.tracks:,} tracks in {seconds:.0f} s", flush=True)
        _vacuum(engine)
        with Session(engine) as session:
            before = measure(session, args.tree, version, ours=False)
        print("before: " + ", ".join(f"{k} {v:.3f}" for k, v in before.items()), flush=True)
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            seconds, _ = timed(lambda: command.upgrade(cfg, "head"))
        print(f"migrations 0003 -> head (0004 backfills {args.tracks:,} pointers): {seconds:.1f} s", flush=True)
        _vacuum(engine)
    with Session(engine) as session:
        ours = measure(session, args.tree, version, ours=True)
        pointers = session.scalar(select(func.count()).select_from(Track).join(
            Prediction, and_(Prediction.id == Track.current_prediction_id, Prediction.track_id == Track.id)).where(
            Prediction.model_version == version))
    ours["stats (genretag stats, wall)"] = cli_seconds(url, "stats")
    with tempfile.TemporaryDirectory() as tmp:
        ours["report (genretag report, wall)"] = cli_seconds(url, "report", "--out", f"{tmp}/library.html")
    print(f"\n{args.tracks:,} tracks on PostgreSQL ({pointers:,} current predictions of {version})")
    print(f"{'':34} {'before':>10} {'ours':>10} {'ratio':>8}")
    for name, value in ours.items():
        old = before.get(name)
        ratio = "" if old is None else (f"{value / old:7.2f}x" if "files/s" in name else f"{old / value:7.1f}x")
        print(f"{name:34} {'' if old is None else f'{old:10.3f}':>10} {value:10.3f} {ratio:>8}")
    print(f"targets: stats <= {STATS_TARGET_S} s, report <= {REPORT_TARGET_S} s (ratio: times faster; files/s: ours / before)")
    if not args.keep and not args.reuse:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{args.schema}" CASCADE'))


def _in_transaction(engine, fn):
    with engine.begin() as conn:
        return fn(conn)


def _vacuum(engine) -> None:
    """What autovacuum does after a bulk load; index-only scans need the visibility map."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE tracks"))
        conn.execute(text("VACUUM ANALYZE predictions"))


if __name__ == "__main__":
    main()
