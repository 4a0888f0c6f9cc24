"""The library report: its SQL aggregates on real SQLite and PostgreSQL, and the page of a real scan in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text, update

from genretag.classify import TrackResult
from genretag.cli import cli
from genretag.config import PACKAGED_MODEL
from genretag.db import Prediction, Track, session_factory, session_scope, store
from genretag.db.queries import done_tallies, tag_agreement
from genretag.bundle import GENRES
from genretag.report import aggregates as agg
from genretag.report.library import SECTIONS, build
from browser import EXTERNAL_URL, rendered_sections

REPO = Path(__file__).resolve().parents[1]
EVIL = "<script>alert(1)</script>.mp3"


def result(genre: str, confidence: float, version: str = "v1") -> TrackResult:
    probs = {g: (confidence if g == genre else (1 - confidence) / (len(GENRES) - 1)) for g in GENRES}
    # uncertain=None: not assessed, as predictions written before calibration (migration 0003) are
    return TrackResult(path="", genre=genre, confidence=confidence, uncertain=None, runner_up=None, vote_share=confidence, mean_probability=confidence, probabilities=probs,
                       votes={genre: 10}, segments_used=10, segment_mode="spread", duration=30.0, format="OGG",
                       model_version=version)


# (path, genre, confidence, tag) of done tracks under /music
DONE = [
    ("/music/Alpha/a1.ogg", "jazz", 0.92, "Jazz"),
    ("/music/Alpha/a2.ogg", "jazz", 0.41, "Delta Blues"),
    ("/music/Alpha/a3.ogg", "blues", 0.66, "Hip-Hop"),
    ("/music/Beta/b1.ogg", "hiphop", 0.73, "Hip-Hop"),
    ("/music/Beta/sub/b2.ogg", "hiphop", 0.30, "hip hop"),
    ("/music/loose.ogg", "rock", 0.99, "<b>Rock & Roll</b>"),
]
FAILED = {"/music/Beta/" + EVIL: "not a readable audio file", "/music/Beta/x.mp3": "not a readable audio file",
          "/music/Alpha/y.mp3": "decoding failed"}


@pytest.fixture
def library(db_url: str) -> str:
    with session_scope(db_url) as s:
        scan = store.start_scan(s, "/music", "v1", "local")
        paths = [p for p, *_ in DONE] + list(FAILED)
        ids = store.insert_tracks(s, [{"path": p, "size": 1, "mtime": 0.0} for p in paths], scan.id)
        for path, genre, conf, tag in DONE:
            store.record_prediction(s, ids[path], result(genre, conf))
            s.execute(update(Track).where(Track.id == ids[path]).values(tag_genre=tag))  # as the tags reader would
        for path, reason in FAILED.items():
            store.record_failure(s, ids[path], reason)
        store.finish_scan(s, scan.id, found=len(paths), new=len(paths), queued=len(paths), done=len(DONE),
                          failed=len(FAILED))
    with session_scope(db_url) as s:  # a later model re-tags a2; only its current prediction counts
        store.record_prediction(s, ids["/music/Alpha/a2.ogg"], result("blues", 0.55, "v2"))
        s.execute(update(Prediction).where(Prediction.model_version == "v2").values(uncertain=True))
        store.finish_scan(s, store.start_scan(s, "/music", "v2", "local").id, found=len(paths), done=1)
    return db_url


def test_aggregates_count_the_current_predictions(library: str) -> None:
    with session_factory(library)() as s:
        genres, by_model = agg.genre_figures(done_tallies(s, None, agg.HISTOGRAM_EDGES))
        assert by_model == {"v1": 5, "v2": 1}
        figs = {g.genre: g for g in genres}
        assert [g.genre for g in genres] == ["blues", "hiphop", "jazz", "rock"]  # most tracks first, then name
        assert (figs["blues"].tracks, figs["blues"].assessed, figs["blues"].uncertain) == (2, 1, 1)
        assert figs["hiphop"].unassessed_low == 1 and figs["jazz"].unassessed_low == 0
        assert figs["jazz"].histogram[18] == 1 and sum(figs["jazz"].histogram) == 1  # 0.92 in [0.90, 0.95)
        assert figs["rock"].histogram[-1] == 1  # the last bin is closed

        v1, _ = agg.genre_figures(done_tallies(s, "v1", agg.HISTOGRAM_EDGES))
        assert {g.genre: g.tracks for g in v1} == {"jazz": 2, "blues": 1, "hiphop": 2, "rock": 1}

        folders = agg.folder_table(s, "/music", None, top=2)
        assert (folders.folders, folders.tracks) == (3, 6)
        assert folders.top == [("Alpha", 3, {"blues": 2, "jazz": 1}), ("Beta", 2, {"hiphop": 2})]
        assert agg.folder_table(s, "/music/Beta", None).top == [("", 1, {"hiphop": 1}), ("sub", 1, {"hiphop": 1})]
        assert agg.scanned_roots(s) == ["/music"]

        tags = tag_agreement(done_tallies(s, None))  # the one `stats` and the report share, through the default mapping table
        assert (tags.tracks, tags.agree) == (4, 3)  # Jazz, Hip-Hop and "hip hop" match; a3's Hip-Hop (blues) does not
        assert tags.per_genre["hiphop"] == {"tracks": 3, "agree": 2, "rate": pytest.approx(2 / 3)}
        assert tags.per_genre["jazz"] == {"tracks": 1, "agree": 1, "rate": 1.0}
        assert tags.confusion == {"hiphop": {"blues": 1, "hiphop": 2}, "jazz": {"jazz": 1}}
        assert (tags.uncertain_tracks, tags.uncertain_agree) == (1, 1)  # a2: "Delta Blues", uncertain blues, apart
        assert (tags.unmapped, tags.unmapped_spellings) == (1, [("<b>Rock & Roll</b>", 1)])  # maps to no genre
        assert tag_agreement(done_tallies(s, "v1")).uncertain_tracks == 0  # v1 predicted a2 as jazz, unassessed: a disagreement
        assert tag_agreement(done_tallies(s, "v1")).confusion["blues"] == {"jazz": 1}

        reasons = agg.failure_reasons(s, examples=1)
        assert [(r.reason, r.tracks) for r in reasons] == [("not a readable audio file", 2), ("decoding failed", 1)]
        assert reasons[0].examples == ["/music/Beta/" + EVIL]

        history = agg.scan_history(s)
        assert [(h.found, h.done) for h in history] == [(9, 6), (9, 1)]  # oldest first
        summary = agg.summary(s, by_model)
        assert (summary.tracks, summary.by_status, summary.roots) == (9, {"done": 6, "failed": 3}, 1)


def test_page_escapes_library_text_and_loads_nothing(library: str) -> None:
    with session_factory(library)() as s:
        page = build(s, None)
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.mp3" in page and "&lt;b&gt;Rock &amp; Roll&lt;/b&gt;" in page
    assert not EXTERNAL_URL.search(page), EXTERNAL_URL.search(page)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
    assert "1 of 6 predictions carry the uncertain flag" in page
    tags = page[page.index('<section id="tags">'):page.index('<section id="failures">')]
    assert "the prediction matches the tag&#x27;s label for 3 (75.0%)" in tags
    assert "<td>hiphop</td><td>blues</td><td class=\"n\">1</td>" in tags  # the one disagreement
    assert "Counted apart: 1 tagged tracks" in tags and "&lt;b&gt;Rock &amp; Roll&lt;/b&gt;" in tags


# --- a real scanned library, rendered in headless Chromium ------------------------------------

CLIPS = {"Artist One": ["blues.00000", "classical.00000", "jazz.00001"], "Artist <Two>": ["metal.00000", "pop.00000"]}


def bundle_with_figures(dest: Path) -> Path:
    """The shipped bundle with the repository's CV and test-split figures in its metadata."""
    with zipfile.ZipFile(PACKAGED_MODEL) as zin, zipfile.ZipFile(dest, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "meta.json":
                meta = json.loads(data)
                meta["metrics"] = {"cv": json.loads((REPO / "docs/cv/cv-gap-shifted.json").read_text()),
                                   "test": json.loads((REPO / "docs/evaluation.json").read_text())}
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    return dest


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, gtzan_dir: Path) -> tuple[str, Path]:
    """GTZAN clips in two artist folders and one bad file, scanned in local mode; the database URL and root."""
    tmp = tmp_path_factory.mktemp("scanned")
    root = tmp / "music"
    for folder, clips in CLIPS.items():
        (root / folder).mkdir(parents=True)
        for clip in clips:
            shutil.copy(gtzan_dir / clip.split(".")[0] / f"{clip}.opus", root / folder / f"{clip}.opus")
    (root / "Artist <Two>" / "<script>.mp3").write_bytes(b"this is not audio" * 100)
    url = f"sqlite:///{tmp / 'genretag.sqlite3'}"
    env = {**os.environ, "GENRETAG_BROKER_URL": "", "GENRETAG_WORKERS": "1", "GENRETAG_DATABASE_URL": url}
    out = subprocess.run([sys.executable, "-m", "genretag.cli", "scan", str(root)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "5 done, 1 failed" in out.stdout, out.stdout
    return url, root


def test_report_of_a_real_scan_in_chromium(scanned: tuple[str, Path], tmp_path: Path) -> None:
    url, root = scanned
    out = tmp_path / "library.html"
    res = CliRunner().invoke(cli, ["--database-url", url, "--model", str(bundle_with_figures(tmp_path / "m.genretag")),
                                   "report", "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert not EXTERNAL_URL.search(page), EXTERNAL_URL.search(page)
    assert "<script" not in page
    dom = rendered_sections(out, tmp_path, 6000, SECTIONS)
    assert "Artist &lt;Two&gt;/&lt;script&gt;.mp3" in dom  # the bad file's path, as text
    assert "Artist &lt;Two&gt;" in dom and "Artist One" in dom  # both folders in the folder table
    assert dom.count("<img") == 5 and "balanced_track_accuracy" in dom  # genres, confidence, folders, scans, confusion; CV figures
    with session_factory(url)() as s:
        done = s.execute(text("SELECT count(*) FROM tracks WHERE status = 'done' AND current_prediction_id IS NOT NULL"))
        assert done.scalar() == 5
