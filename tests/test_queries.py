"""The read side on real SQLite and real PostgreSQL: filters, prefixes and globs, stats, export, the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from genretag.classify import TrackResult
from genretag.cli import cli
from genretag.db import Prediction, ScanRun, Track, session_factory, session_scope
from genretag.db import store
from genretag.db.queries import (
    EXPORT_FIELDS,
    SUMMARY_FIELDS,
    TrackFilter,
    find_tracks,
    glob_to_like,
    library_stats,
    literal_prefix,
)
from genretag.bundle import GENRES

# path -> (genre, vote share) of model v1; None: no prediction. Names hold %, _, quotes, case twins.
TAGGED = {
    "/music/rock/one.mp3": ("rock", 0.9),
    "/music/rock/two.ogg": ("rock", 0.45),
    "/music/rock_n_roll/three.mp3": ("jazz", 0.3),
    "/music/rockXn_roll/four.mp3": ("blues", 0.7),  # an unescaped "_" in LIKE would match this too
    "/music/100% pure/five.flac": ("pop", 0.55),
    "/music/100 pure/six.flac": ("pop", 0.65),  # an unescaped "%" would match this too
    "/music/it's \"quoted\"/seven.mp3": ("classical", 0.95),
    "/music/Rock/eight.MP3": ("metal", 0.85),  # SQLite's LIKE ignores case; the queries must not
    "/music/ünï/nine.ogg": ("reggae", 1.0),
    "/music/multi/ten.ogg": ("disco", 0.4),  # v2 says hiphop 0.8 later
}
FAILED = {
    "/music/broken/bad.mp3": "not a readable audio file (Format not recognised)",
    "/music/broken/bad2.mp3": "not a readable audio file (Format not recognised)",
    "/music/broken/worse.mp3": "decoding failed (Internal error)",
}
PENDING = ["/music/new/pending.mp3"]
GONE = "/gone/old.ogg"
ALL_PATHS = sorted([*TAGGED, *FAILED, *PENDING, GONE])


def result(path: str, genre: str, share: float, version: str = "v1") -> TrackResult:
    probs = {g: (0.6 if g == genre else (0.3 if g == "country" else 0.1 / (len(GENRES) - 2))) for g in GENRES}
    votes = {g: (round(10 * share) if g == genre else 0) for g in GENRES}
    return TrackResult(
        path=path, genre=genre, confidence=share, uncertain=share < 0.5, runner_up="country" if share < 0.5 else None,
        vote_share=share, mean_probability=0.6, probabilities=probs, votes=votes,
        segments_used=10, segment_mode="spread", duration=200.0, format="MP3", model_version=version,
    )


@pytest.fixture
def library(db_url: str) -> str:
    """A store with tagged, failed, pending and missing tracks, written through genretag.db.store."""
    with session_scope(db_url) as s:
        scan = store.start_scan(s, "/music", "v1", "local")
        rows = [{"path": p, "size": 1000 + i, "mtime": 1.5} for i, p in enumerate([*TAGGED, *FAILED, *PENDING])]
        ids = store.insert_tracks(s, rows, scan.id)
        for path, (genre, share) in TAGGED.items():
            store.record_prediction(s, ids[path], result(path, genre, share))
        for path, reason in FAILED.items():
            store.record_failure(s, ids[path], reason)
        store.finish_scan(s, scan.id, found=len(rows), new=len(rows), queued=len(rows), done=len(TAGGED),
                          failed=len(FAILED))
    with session_scope(db_url) as s:
        store.record_prediction(s, ids["/music/multi/ten.ogg"], result("/music/multi/ten.ogg", "hiphop", 0.8, "v2"))
        old = store.start_scan(s, "/gone", "v1", "local")
        store.insert_tracks(s, [{"path": GONE, "size": 1, "mtime": 1.0}], old.id)
        later = store.start_scan(s, "/gone", "v1", "local")
        store.finish_scan(s, later.id, missing=store.mark_missing(s, "/gone", later.id))
    return db_url


def paths(url: str, **filters: object) -> list[str]:
    with session_factory(url)() as session:
        return [r.path for r in find_tracks(session, TrackFilter(**filters))]


def invoke(url: str, *args: str) -> str:
    res = CliRunner().invoke(cli, ["--database-url", url, *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


# --- pure translation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "like", "prefix"),
    [
        ("/m/*.mp3", "/m/%.mp3", "/m/"),
        ("/m/a?c", "/m/a_c", "/m/a"),
        ("/m/[Rr]ock/*", "/m/_ock/%", "/m/"),
        ("/m/[!]x]y", "/m/_y", "/m/"),
        ("/m/100% pure_\\*", "/m/100\\% pure\\_\\\\%", "/m/100% pure_\\"),
        ("/m/a[b", "/m/a[b", "/m/a"),  # an unclosed [ is a plain character, as in fnmatch
    ],
)
def test_glob_translates_to_an_escaped_like_and_a_literal_prefix(glob: str, like: str, prefix: str) -> None:
    assert glob_to_like(glob) == like
    assert literal_prefix(glob) == prefix


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown status"):
        TrackFilter(status="done' OR '1'='1")


# --- filters on real databases ---------------------------------------------------------------


def test_no_filter_lists_every_track_in_path_order(library: str) -> None:
    assert paths(library) == ALL_PATHS


def test_each_filter(library: str) -> None:
    assert paths(library, genre="rock") == ["/music/rock/one.mp3", "/music/rock/two.ogg"]
    assert paths(library, genre="pop", min_confidence=0.6) == ["/music/100 pure/six.flac"]
    assert paths(library, min_confidence=0.9) == [
        "/music/it's \"quoted\"/seven.mp3", "/music/rock/one.mp3", "/music/ünï/nine.ogg"]
    assert paths(library, max_confidence=0.45) == ["/music/rock/two.ogg", "/music/rock_n_roll/three.mp3"]
    assert paths(library, min_confidence=0.5, max_confidence=0.7) == [
        "/music/100 pure/six.flac", "/music/100% pure/five.flac", "/music/rockXn_roll/four.mp3"]
    assert paths(library, status="failed") == sorted(FAILED)
    assert paths(library, status="pending") == PENDING
    assert paths(library, status="missing") == [GONE]
    assert paths(library, limit=3) == ALL_PATHS[:3]
    assert paths(library, status="done", limit=2) == sorted(TAGGED)[:2]


def test_latest_prediction_by_default_and_any_model_version_on_request(library: str) -> None:
    ten = "/music/multi/ten.ogg"
    with session_factory(library)() as s:
        (latest,) = find_tracks(s, TrackFilter(path=ten))
        (old,) = find_tracks(s, TrackFilter(path=ten, model_version="v1"))
        assert (latest.genre, latest.confidence, latest.model_version) == ("hiphop", 0.8, "v2")
        assert (old.genre, old.confidence, old.model_version) == ("disco", 0.4, "v1")
        # Under v2 only "ten" has a prediction; the other tracks are listed without one.
        v2 = {r.path: r.genre for r in find_tracks(s, TrackFilter(model_version="v2"))}
    assert v2[ten] == "hiphop" and sum(g is not None for g in v2.values()) == 1 and len(v2) == len(ALL_PATHS)
    assert paths(library, genre="disco") == []
    assert paths(library, genre="disco", model_version="v1") == [ten]
    assert paths(library, genre="hiphop", model_version="v1") == []


def test_path_prefixes_are_exact_with_percent_underscore_quotes_and_case(library: str) -> None:
    assert paths(library, path="/music/rock/") == ["/music/rock/one.mp3", "/music/rock/two.ogg"]
    assert paths(library, path="/music/rock_") == ["/music/rock_n_roll/three.mp3"]
    assert paths(library, path="/music/100%") == ["/music/100% pure/five.flac"]
    assert paths(library, path="/music/it's \"") == ["/music/it's \"quoted\"/seven.mp3"]
    assert paths(library, path="/music/Rock") == ["/music/Rock/eight.MP3"]
    assert paths(library, path="/music/ünï/") == ["/music/ünï/nine.ogg"]
    assert paths(library, path="/music/rock/one.mp3") == ["/music/rock/one.mp3"]
    assert paths(library, path="/nowhere") == []


def test_path_globs(library: str) -> None:
    assert paths(library, path="*.flac") == ["/music/100 pure/six.flac", "/music/100% pure/five.flac"]
    assert paths(library, path="*.MP3") == ["/music/Rock/eight.MP3"]  # case-sensitive on SQLite too
    assert paths(library, path="/music/[Rr]ock/*") == [
        "/music/Rock/eight.MP3", "/music/rock/one.mp3", "/music/rock/two.ogg"]
    assert paths(library, path="/music/rock?n_roll/*") == [
        "/music/rockXn_roll/four.mp3", "/music/rock_n_roll/three.mp3"]
    assert paths(library, path="/music/rock[_]n_roll/*") == ["/music/rock_n_roll/three.mp3"]
    assert paths(library, path="/music/100% */*") == ["/music/100% pure/five.flac"]
    assert paths(library, path="*it's \"quoted\"*") == ["/music/it's \"quoted\"/seven.mp3"]
    assert paths(library, path="/music/[!r]*/*.ogg") == ["/music/multi/ten.ogg", "/music/ünï/nine.ogg"]
    assert paths(library, path="/music/*.mp3", genre="rock", limit=1) == ["/music/rock/one.mp3"]
    assert paths(library, path="/music/*", status="failed", limit=2) == sorted(FAILED)[:2]


@pytest.mark.parametrize(
    "hostile",
    ["rock' OR '1'='1", "'; DROP TABLE tracks; --", "%", "_", "*' OR 1=1 --", "\\", "\"); DELETE FROM predictions; --"],
)
def test_injection_looking_values_match_nothing_and_break_nothing(library: str, hostile: str) -> None:
    assert paths(library, genre=hostile) == []
    assert paths(library, model_version=hostile, genre="rock") == []
    assert paths(library, path=hostile) == []
    assert paths(library, path="/music/" + hostile) == []
    out = invoke(library, "query", "--json", "--genre", hostile, "--path", hostile)
    assert json.loads(out) == []
    with session_factory(library)() as s:
        assert s.scalar(select(func.count()).select_from(Track)) == len(ALL_PATHS)
        assert s.scalar(select(func.count()).select_from(Prediction)) == len(TAGGED) + 1
    assert paths(library) == ALL_PATHS


# --- the query command -----------------------------------------------------------------------


def test_query_json_and_csv_parse_back_to_the_same_rows(library: str) -> None:
    with session_factory(library)() as s:
        expected = [r.summary() for r in find_tracks(s, TrackFilter(path="/music/"))]
    as_json = json.loads(invoke(library, "query", "--path", "/music/", "--json"))
    assert as_json == expected
    one = next(r for r in as_json if r["path"] == "/music/rock/one.mp3")
    assert one["genre"] == "rock" and one["confidence"] == 0.9 and one["mean_probability"] == 0.6
    assert [t["genre"] for t in one["top3"]] == ["rock", "country", one["top3"][2]["genre"]]
    bad = next(r for r in as_json if r["path"] == "/music/broken/worse.mp3")
    assert bad["status"] == "failed" and bad["error"] == FAILED["/music/broken/worse.mp3"] and bad["genre"] is None

    rows = list(csv.DictReader(io.StringIO(invoke(library, "query", "--path", "/music/", "--csv"))))
    assert tuple(rows[0]) == SUMMARY_FIELDS
    assert [r["path"] for r in rows] == [r["path"] for r in expected]
    for got, want in zip(rows, expected):
        assert got["status"] == want["status"] and (got["genre"] or None) == want["genre"]
        assert (float(got["confidence"]) if got["confidence"] else None) == want["confidence"]
        assert json.loads(got["top3"]) == want["top3"]
        assert (got["error"] or None) == want["error"]


def test_query_table_shows_genre_top3_model_and_errors(library: str) -> None:
    out = invoke(library, "query", "--status", "failed").splitlines()
    assert out[0].startswith("STATUS") and len(out) == 1 + len(FAILED)
    assert any(line.endswith("/music/broken/worse.mp3  error: decoding failed (Internal error)") for line in out)
    (line,) = invoke(library, "query", "--genre", "hiphop").splitlines()[1:]
    assert "hiphop" in line and "0.80" in line and "hiphop:0.60 country:0.30" in line and " v2 " in line


def test_query_uncertain_and_confident_split_the_calls_and_stats_count_them(library: str) -> None:
    """Calls below 0.5 were stored uncertain (with a close runner-up); each track's latest prediction counts."""
    assert paths(library, uncertain=True) == ["/music/rock/two.ogg", "/music/rock_n_roll/three.mp3"]
    confident = paths(library, uncertain=False)
    assert "/music/multi/ten.ogg" in confident and len(confident) == len(TAGGED) - 2
    assert paths(library, uncertain=True, model_version="v1") == [
        "/music/multi/ten.ogg", "/music/rock/two.ogg", "/music/rock_n_roll/three.mp3"]
    out = invoke(library, "query", "--uncertain").splitlines()
    assert len(out) == 3 and "uncertain: rock or country" in out[1] and "uncertain: jazz or country" in out[2]
    listed = json.loads(invoke(library, "query", "--confident", "--json"))
    assert {r["path"] for r in listed} == set(confident) and not any(r["uncertain"] for r in listed)
    stats = json.loads(invoke(library, "stats", "--json"))
    assert stats["uncertain"] == 2 and stats["uncertain_share"] == pytest.approx(0.2)
    assert "uncertain: 2 of 10 (20.0%)" in invoke(library, "stats")


def test_query_refuses_an_unknown_status(library: str) -> None:
    res = CliRunner().invoke(cli, ["--database-url", library, "query", "--status", "nope"])
    assert res.exit_code == 2 and "unknown status" in res.output


# --- stats -----------------------------------------------------------------------------------


def test_stats_match_what_was_inserted(library: str) -> None:
    with session_factory(library)() as s:
        stats = library_stats(s, top_failures=1, last_scans=2)
        v1 = library_stats(s, model_version="v1")
    assert stats.tracks == len(ALL_PATHS)
    assert stats.by_status == {"done": len(TAGGED), "failed": 3, "pending": 1, "missing": 1}
    assert stats.by_genre == {"pop": 2, "rock": 2, "blues": 1, "classical": 1, "hiphop": 1, "jazz": 1, "metal": 1,
                              "reggae": 1}
    assert list(stats.by_genre)[:2] == ["pop", "rock"]  # most common first, ties by name
    # Vote shares 0.9 .45 .3 .7 .55 .65 .95 .85 1.0 and (latest) .8 -> buckets of width 0.2.
    assert [(b.low, b.high, b.count) for b in stats.confidence] == [
        (0.0, 0.2, 0), (0.2, 0.4, 1), (0.4, 0.6, 2), (0.6, 0.8, 2), (0.8, 1.0, 5)]
    assert stats.failures == [("not a readable audio file (Format not recognised)", 2)]
    assert [s["root"] for s in stats.scans] == ["/gone", "/gone"] and stats.scans[0]["missing"] == 1
    assert v1.by_genre["disco"] == 1 and "hiphop" not in v1.by_genre
    assert [b.count for b in v1.confidence] == [0, 1, 3, 2, 4]

    full = json.loads(invoke(library, "stats", "--json", "--scans", "3"))
    assert full["by_status"] == stats.by_status and full["by_genre"] == stats.by_genre
    assert [b["count"] for b in full["confidence"]] == [0, 1, 2, 2, 5]
    assert full["failures"] == [{"reason": "not a readable audio file (Format not recognised)", "tracks": 2},
                                {"reason": "decoding failed (Internal error)", "tracks": 1}]
    first = full["scans"][-1]
    assert (first["root"], first["found"], first["done"], first["failed"]) == ("/music", 14, 10, 3)
    assert first["finished_at"] is not None
    text = invoke(library, "stats")
    assert "15 tracks" in text and "decoding failed (Internal error)" in text and "0.8-1.0" in text


def test_stats_of_an_empty_store(db_url: str) -> None:
    out = json.loads(invoke(db_url, "stats", "--json"))
    assert out["tracks"] == 0 and out["by_genre"] == {} and out["scans"] == []
    assert [b["count"] for b in out["confidence"]] == [0] * 5
    assert "0 tracks" in invoke(db_url, "stats")


# --- export ----------------------------------------------------------------------------------


def test_export_round_trip_json_and_csv(library: str, tmp_path: Path) -> None:
    with session_factory(library)() as s:
        expected = [r.full() for r in find_tracks(s)]
    assert [r["path"] for r in expected] == ALL_PATHS

    invoke(library, "export", "--format", "json", "--out", str(tmp_path / "all.json"))
    assert json.loads((tmp_path / "all.json").read_text(encoding="utf-8")) == expected

    invoke(library, "export", "--format", "csv", "--out", str(tmp_path / "all.csv"))
    with open(tmp_path / "all.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == EXPORT_FIELDS and len(rows) == len(expected)
    by_path = {r["path"]: r for r in rows}
    for path, (genre, share) in TAGGED.items():
        row = by_path[path]
        want = result(path, genre, share) if path != "/music/multi/ten.ogg" else result(path, "hiphop", 0.8, "v2")
        assert row["genre"] == want.genre and float(row["confidence"]) == want.vote_share
        assert json.loads(row["probabilities"]) == pytest.approx(want.probabilities)
        assert json.loads(row["votes"]) == want.votes
        assert row["model_version"] == want.model_version and int(row["segments_used"]) == 10
    assert by_path["/music/broken/bad.mp3"]["error"] == FAILED["/music/broken/bad.mp3"]
    assert by_path[GONE]["status"] == "missing" and by_path[GONE]["probabilities"] == ""

    # stdout too, and an older model's view on request
    old = json.loads(invoke(library, "export", "--format", "json", "--model-version", "v1"))
    assert next(r for r in old if r["path"] == "/music/multi/ten.ogg")["genre"] == "disco"


def test_export_streams_more_rows_than_one_fetch_batch(db_url: str, tmp_path: Path) -> None:
    from genretag.db.queries import STREAM_BATCH

    n = 2 * STREAM_BATCH + 37
    with session_scope(db_url) as s:
        scan = store.start_scan(s, "/big", "v1", "local")
        rows = [{"path": f"/big/{i:05d}.mp3", "size": i, "mtime": 0.0} for i in range(n)]
        ids = store.insert_tracks(s, rows, scan.id)
        for path in list(ids)[::100]:
            store.record_prediction(s, ids[path], result(path, "blues", 0.5))
    invoke(db_url, "export", "--format", "csv", "--out", str(tmp_path / "big.csv"))
    with open(tmp_path / "big.csv", newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert [r["path"] for r in got] == [r["path"] for r in rows]
    assert sum(r["genre"] == "blues" for r in got) == len(range(0, n, 100))
    with session_factory(db_url)() as s:
        assert s.scalar(select(func.count()).select_from(ScanRun)) == 1


def test_stats_on_a_migrated_database_loads_no_numerics_plotting_or_migration_code(library: str) -> None:
    """Start-up is part of `genretag stats`'s wall time (bench/scale.py): it needs SQLAlchemy and the driver only."""
    import subprocess
    import sys

    code = ("import json, sys; from genretag.cli import main; sys.argv = ['genretag', '--database-url', sys.argv[1], "
            "'stats']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'scipy', 'matplotlib', "
            "'alembic', 'celery', 'librosa', 'tensorflow', 'ai_edge_litert', 'soundfile', 'mutagen'})))")
    proc = subprocess.run([sys.executable, "-c", code, library], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    *shown, loaded = proc.stdout.splitlines()
    assert "uncertain: 2 of 10 (20.0%)" in "\n".join(shown)
    assert json.loads(loaded) == []


# --- on what a real scan wrote -----------------------------------------------------------------


def test_query_stats_and_export_read_what_a_real_scan_wrote(real_library: Path, sqlite_url: str,
                                                            tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["--database-url", sqlite_url, "--broker-url", "", "--workers", "1",
                              "scan", str(real_library)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    files = sorted(str(p) for p in Path(real_library).resolve().rglob("*") if p.suffix in {".mp3", ".ogg"})

    listed = json.loads(invoke(sqlite_url, "query", "--json"))
    assert [r["path"] for r in listed] == files
    for row in listed:
        assert row["status"] == "done" and row["genre"] in GENRES and 0 < row["confidence"] <= 1
        assert [t["probability"] for t in row["top3"]] == sorted((t["probability"] for t in row["top3"]), reverse=True)
    by_genre = {}
    for row in listed:
        by_genre[row["genre"]] = by_genre.get(row["genre"], 0) + 1

    stats = json.loads(invoke(sqlite_url, "stats", "--json"))
    assert stats["by_status"] == {"done": len(files)} and stats["by_genre"] == by_genre
    assert sum(b["count"] for b in stats["confidence"]) == len(files)
    (scan,) = stats["scans"]
    assert (scan["found"], scan["new"], scan["done"], scan["failed"], scan["mode"]) == (len(files), len(files),
                                                                                        len(files), 0, "local")
    invoke(sqlite_url, "export", "--format", "json", "--out", str(tmp_path / "lib.json"))
    exported = json.loads((tmp_path / "lib.json").read_text(encoding="utf-8"))
    assert [r["path"] for r in exported] == files
    assert all(sum(r["votes"].values()) == r["segments_used"] and r["duration"] > 60 for r in exported)
