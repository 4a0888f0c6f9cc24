"""The library database on real SQLite and real PostgreSQL: schema, upserts, attempts, path ranges."""

from __future__ import annotations

import multiprocessing

import pytest
from sqlalchemy import func, select, text

from genretag.classify import TrackResult
from genretag.db import Prediction, ScanRun, Track, TrackStatus, get_engine, session_scope
from genretag.db import store
from genretag.db.engine import SCHEMA_REVISION, alembic_config, current_revision, head_revision
from genretag.bundle import GENRES
from genretag.db.queries import find_tracks


def result_for(path: str, genre: str = "rock", version: str = "v1", share: float = 0.6) -> TrackResult:
    probs = {g: (0.5 if g == genre else 0.5 / (len(GENRES) - 1)) for g in GENRES}
    votes = {g: (6 if g == genre else 0) for g in GENRES}
    return TrackResult(
        path=path, genre=genre, confidence=share, uncertain=share < 0.5, runner_up=None, vote_share=share,
        mean_probability=0.5, probabilities=probs, votes=votes,
        segments_used=10, segment_mode="spread", duration=123.0, format="OGG/VORBIS", model_version=version,
    )


def add_track(url: str, path: str = "/music/a.ogg") -> int:
    with session_scope(url) as s:
        scan = store.start_scan(s, "/music", "v1", "local")
        return store.insert_tracks(s, [{"path": path, "size": 10, "mtime": 1.0}], scan.id)[path]


def test_first_use_migrates_to_head_and_schema_matches_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = get_engine(db_url)
    assert current_revision(engine) == head_revision() == SCHEMA_REVISION  # the start-up check's constant is the head
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Track.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    assert alembic_config().get_main_option("script_location").endswith("migrations")


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    with get_engine(sqlite_url).connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000


def test_prediction_upsert_is_idempotent(db_url: str) -> None:
    track_id = add_track(db_url)
    with session_scope(db_url) as s:
        store.record_prediction(s, track_id, result_for("/music/a.ogg", "rock"))
    with session_scope(db_url) as s:  # the same file, the same model, classified again
        store.record_prediction(s, track_id, result_for("/music/a.ogg", "jazz", share=0.9))
    with session_scope(db_url) as s:
        rows = s.scalars(select(Prediction).where(Prediction.track_id == track_id)).all()
        assert [(p.genre, p.confidence, p.model_version) for p in rows] == [("jazz", 0.9, "v1")]
        assert rows[0].probabilities["jazz"] == pytest.approx(0.5)
        assert rows[0].votes["jazz"] == 6
        track = s.get(Track, track_id)
        assert (track.status, track.duration, track.format) == ("done", 123.0, "OGG/VORBIS")
    with session_scope(db_url) as s:  # a new model adds a row beside the old one
        store.record_prediction(s, track_id, result_for("/music/a.ogg", "blues", version="v2"))
    with session_scope(db_url) as s:
        versions = s.scalars(select(Prediction.model_version).where(Prediction.track_id == track_id)).all()
        assert sorted(versions) == ["v1", "v2"]


def test_claim_counts_attempts_before_work_and_gives_up(db_url: str) -> None:
    track_id = add_track(db_url)
    for attempt in (1, 2, 3):
        with session_scope(db_url) as s:
            claim = store.claim(s, track_id, max_attempts=3)
            assert claim is not None and claim.attempt == attempt and claim.path == "/music/a.ogg"
    with session_scope(db_url) as s:  # three attempts never recorded an outcome: the fourth gives up
        assert store.claim(s, track_id, max_attempts=3) is None
    with session_scope(db_url) as s:
        track = s.get(Track, track_id)
        assert track.status == TrackStatus.failed.value and "gave up after 3 attempts" in track.error
        assert store.claim(s, track_id, max_attempts=3) is None  # not pending: nothing to do


def test_release_gives_back_an_interrupted_attempt(db_url: str) -> None:
    track_id = add_track(db_url)
    with session_scope(db_url) as s:
        store.claim(s, track_id, max_attempts=3)
        store.release(s, [track_id])
    with session_scope(db_url) as s:
        assert s.get(Track, track_id).attempts == 0


def test_failure_keeps_its_reason(db_url: str) -> None:
    track_id = add_track(db_url)
    with session_scope(db_url) as s:
        store.record_failure(s, track_id, "cannot decode: not an audio file")
    with session_scope(db_url) as s:
        assert s.get(Track, track_id).error == "cannot decode: not an audio file"


def test_under_root_selects_exactly_the_paths_inside(db_url: str) -> None:
    paths = ["/music/a.ogg", "/music/sub/b.mp3", "/music-b/c.ogg", "/musicx.ogg", "/music0/d.ogg", "/Music/e.ogg",
             "/music/ü.ogg"]
    with session_scope(db_url) as s:
        scan = store.start_scan(s, "/", "v1", "local")
        store.insert_tracks(s, [{"path": p, "size": 1, "mtime": 0.0} for p in paths], scan.id)
    with session_scope(db_url) as s:
        for root in ("/music", "/music/"):
            inside = s.scalars(select(Track.path).where(store.under_root(Track.path, root))).all()
            assert sorted(inside) == ["/music/a.ogg", "/music/sub/b.mp3", "/music/ü.ogg"]


def test_mark_missing_and_scan_counts(db_url: str) -> None:
    with session_scope(db_url) as s:
        first = store.start_scan(s, "/music", "v1", "local")
        ids = store.insert_tracks(s, [{"path": f"/music/{n}.ogg", "size": 1, "mtime": 0.0} for n in "abc"], first.id)
        other = store.insert_tracks(s, [{"path": "/elsewhere/x.ogg", "size": 1, "mtime": 0.0}], first.id)
    with session_scope(db_url) as s:
        second = store.start_scan(s, "/music", "v1", "local")
        store.touch_tracks(s, [ids["/music/a.ogg"], ids["/music/b.ogg"]], second.id)
        assert store.mark_missing(s, "/music", second.id) == 1
        store.finish_scan(s, second.id, found=2, missing=1)
    with session_scope(db_url) as s:
        assert s.get(Track, ids["/music/c.ogg"]).status == "missing"
        assert s.get(Track, other["/elsewhere/x.ogg"]).status == "pending"
        run = s.get(ScanRun, second.id)
        assert (run.found, run.missing) == (2, 1) and run.finished_at is not None
        assert store.count_present(s, "/music") == 2


def test_deleting_a_track_deletes_its_predictions(db_url: str) -> None:
    track_id = add_track(db_url)
    with session_scope(db_url) as s:
        store.record_prediction(s, track_id, result_for("/music/a.ogg"))
    with session_scope(db_url) as s:
        s.delete(s.get(Track, track_id))
    with session_scope(db_url) as s:
        assert s.scalar(select(func.count()).select_from(Prediction)) == 0


def _first_use(url: str) -> str | None:
    return current_revision(get_engine(url))


def test_many_processes_starting_at_once_migrate_once(db_url: str) -> None:
    """Celery children and local-mode processes all open the database at start-up."""
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        revisions = pool.map(_first_use, [db_url] * 4)
    assert revisions == [head_revision()] * 4


def built_by(url: str, revision: str):
    """An engine on a database migrated only up to ``revision`` (no first-use migration), for rows of that schema."""
    from alembic import command

    from genretag.db.engine import create

    engine = create(url)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return engine


def test_upgrade_from_0001_backfills_the_current_prediction(db_url: str) -> None:
    """A database built by revision 0001, with rows, upgraded in place: each track points at its latest prediction."""
    engine = built_by(db_url, "0001")
    now = "2026-11-30 12:00:00+00:00"
    with engine.begin() as conn:
        for i, path in enumerate(["/m/two-models.ogg", "/m/one.ogg", "/m/pending.ogg"], 1):
            conn.execute(text(
                "INSERT INTO tracks (id, path, size, mtime, status, attempts, created_at, updated_at) "
                "VALUES (:id, :path, 1, 0.0, :status, 0, :now, :now)"), {"id": i, "path": path, "now": now,
                                                                         "status": "pending" if i == 3 else "done"})
        for pid, track, version, genre, at in [(10, 1, "v2", "jazz", "2026-11-29 10:00:00+00:00"),
                                               (11, 1, "v1", "rock", "2026-11-28 10:00:00+00:00"),
                                               (12, 2, "v1", "blues", "2026-11-28 10:00:00+00:00")]:
            conn.execute(text(
                "INSERT INTO predictions (id, track_id, model_version, genre, confidence, mean_probability, "
                "probabilities, votes, segments_used, segment_mode, created_at) "
                "VALUES (:id, :track, :version, :genre, 0.7, 0.6, '{}', '{}', 10, 'spread', :at)"),
                {"id": pid, "track": track, "version": version, "genre": genre, "at": at})
    assert current_revision(engine) == "0001"
    engine.dispose()
    engine = get_engine(db_url)  # first use migrates to head
    assert current_revision(engine) == head_revision()
    with session_scope(db_url) as s:
        pointers = dict(s.execute(select(Track.path, Track.current_prediction_id)).tuples().all())
        assert pointers == {"/m/two-models.ogg": 10, "/m/one.ogg": 12, "/m/pending.ogg": None}
        assert s.get(Prediction, 12).vote_share == 0.7  # 0003 ran on the way
    with session_scope(db_url) as s:  # the store keeps the pointer from now on: v1 again becomes current
        store.record_prediction(s, 1, result_for("/m/two-models.ogg", "rock", version="v1"))
    with session_scope(db_url) as s:
        assert s.get(Track, 1).current_prediction_id == 11


def test_upgrade_from_0004_keeps_the_rows_and_stores_a_long_runner_up(db_url: str) -> None:
    """A database built by revision 0004, with rows, upgraded in place: the prediction and the track's
    pointer survive (on SQLite the table is rebuilt), and a runner-up of a 100-character label now fits."""
    import dataclasses

    engine = built_by(db_url, "0004")
    now = "2026-12-04 12:00:00+00:00"
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tracks (id, path, size, mtime, status, attempts, created_at, updated_at, "
                          "current_prediction_id) VALUES (1, '/m/a.ogg', 1, 0.0, 'done', 1, :now, :now, 10)"), {"now": now})
        conn.execute(text(
            "INSERT INTO predictions (id, track_id, model_version, genre, confidence, mean_probability, probabilities, "
            "votes, segments_used, segment_mode, created_at, vote_share, uncertain, runner_up) "
            "VALUES (10, 1, 'v1', 'jazz', 0.4, 0.4, '{}', '{}', 10, 'spread', :now, 0.5, :yes, 'classical')"),
            {"now": now, "yes": True})
    assert current_revision(engine) == "0004"
    engine.dispose()
    engine = get_engine(db_url)  # first use migrates to head
    assert current_revision(engine) == head_revision()
    long_label = "progressive " * 8 + "rock"  # 100 characters
    with session_scope(db_url) as s:
        kept = s.get(Prediction, 10)
        assert (kept.genre, kept.runner_up, kept.uncertain, s.get(Track, 1).current_prediction_id) == \
            ("jazz", "classical", True, 10)
        store.record_prediction(s, 1, dataclasses.replace(result_for("/m/a.ogg", "jazz", version="v2"),
                                                          runner_up=long_label))
    with session_scope(db_url) as s:
        assert s.get(Prediction, s.get(Track, 1).current_prediction_id).runner_up == long_label
        assert s.scalar(select(func.count()).select_from(Prediction)) == 2


def test_current_prediction_follows_the_last_upsert(db_url: str) -> None:
    track_id = add_track(db_url)
    with session_scope(db_url) as s:
        store.record_prediction(s, track_id, result_for("/music/a.ogg", "rock", version="v1"))
        store.record_prediction(s, track_id, result_for("/music/a.ogg", "jazz", version="v2"))
    with session_scope(db_url) as s:
        current = s.get(Prediction, s.get(Track, track_id).current_prediction_id)
        assert (current.model_version, current.genre) == ("v2", "jazz")
    with session_scope(db_url) as s:  # a prediction deleted under the pointer joins to nothing, as NULL would
        s.delete(current)
    with session_scope(db_url) as s:
        (row,) = find_tracks(s)
        assert (row.path, row.status, row.genre) == ("/music/a.ogg", "done", None)


def test_downgrade_to_0003_keeps_the_predictions(db_url: str) -> None:
    from alembic import command

    track_id = add_track(db_url)
    with session_scope(db_url) as s:
        store.record_prediction(s, track_id, result_for("/music/a.ogg"))
    engine = get_engine(db_url)
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM predictions")).scalar() == 1
        assert "current_prediction_id" not in conn.execute(text("SELECT * FROM tracks")).keys()
