"""The files' own tags: read in every format on a real scan, mapped, written back atomically, undone.

Real files (GTZAN clips encoded here to mp3, ogg, opus, flac and m4a with PyAV), tagged by the test
with mutagen; the real ``genretag`` command on a real database.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest
from sqlalchemy import select

from filetags import set_tags
from media import audio_hash, convert, decode
from processes import run_genretag
from genretag import tags
from genretag.classify import TrackResult
from genretag.db import Track, session_scope, store
from genretag.db.models import TagWrite
from genretag.genremap import GenreMap, GenreMapError, load_map, spelling_key
from genretag.producer.walk import is_audio_name

FORMATS = (".mp3", ".ogg", ".opus", ".flac", ".m4a")  # the scanned library's
TAG_FORMATS = (*FORMATS, ".wma")  # read and written one file at a time
SECONDS = 8.0


@pytest.fixture(scope="session")
def encoded(tmp_path_factory: pytest.TempPathFactory, gtzan_dir: Path) -> dict[str, Path]:
    """One untagged 8-s clip per format (jazz.00001 for all), encoded once per session."""
    out = tmp_path_factory.mktemp("encoded")
    return {ext: convert(gtzan_dir / "jazz" / "jazz.00001.opus", out / f"clip{ext}", SECONDS) for ext in TAG_FORMATS}


# --- reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", TAG_FORMATS)
def test_each_format_reads_its_genre_artist_album_artist_album_and_title(tmp_path, encoded, ext) -> None:
    path = Path(shutil.copy(encoded[ext], tmp_path / f"t{ext}"))
    assert tags.read_tags(path) == tags.FileTags()  # untagged
    set_tags(path, ["Acid Jazz", "Fusion"], artist="Ann", album="First", title="One", album_artist="Various")
    assert tags.read_tags(path) == tags.FileTags("Acid Jazz; Fusion", "Ann", "Various", "First", "One")


@pytest.mark.parametrize("stored, expected", [("(17)", "Rock"), ("17", "Rock"), ("(9)Metal", "Metal"),
                                              ("(7)(8)", "Hip-Hop; Jazz")])
def test_id3v1_numeric_genres_read_as_their_names(tmp_path, encoded, stored, expected) -> None:
    path = Path(shutil.copy(encoded[".mp3"], tmp_path / "n.mp3"))
    set_tags(path, [stored])
    assert tags.read_tags(path).genre == expected


def test_a_tag_that_cannot_be_read_is_logged_not_raised(tmp_path, encoded, caplog) -> None:
    path = Path(shutil.copy(encoded[".flac"], tmp_path / "broken.flac"))
    data = bytearray(path.read_bytes())
    data[4:40] = b"\xff" * 36  # the STREAMINFO block header: mutagen refuses the file
    path.write_bytes(bytes(data))
    with pytest.raises(tags.TagError):
        tags.read_tags(path)
    with caplog.at_level(logging.WARNING, logger="genretag.tags"):
        assert tags.read_logged(path) == tags.FileTags()
    assert "broken.flac" in caplog.text and "not read" in caplog.text


# --- mapping ------------------------------------------------------------------------------------


def test_default_map_covers_the_ten_genres_and_leaves_unknown_tags_unmapped() -> None:
    from genretag.bundle import GENRES

    m = load_map()
    assert m.targets() == set(GENRES)
    for tag, genre in (("Hip-Hop", "hiphop"), ("Rap", "hiphop"), ("hip hop", "hiphop"), ("Heavy Metal", "metal"),
                       ("Death Metal", "metal"), ("Punk", "rock"), ("Classic Rock", "rock"), ("Hip-Hop/Rap", "hiphop"),
                       ("Soundtrack; Jazz", "jazz"), ("ROCK", "rock")):
        assert m.lookup(tag) == genre, tag
    for tag in ("Soundtrack", "Rockabilly Soundtrack", "Electronic", "", None, "Jazzy"):
        assert m.lookup(tag) is None, tag


def test_a_user_file_extends_and_overrides_the_table(tmp_path) -> None:
    user = tmp_path / "map.txt"
    user.write_text("# mine\nNu Jazz = jazz\nAlternative =\nChiptune = Loud  \n")
    m = load_map(user)
    assert (m.lookup("nu-jazz"), m.lookup("Alternative"), m.lookup("chiptune"), m.lookup("Rap")) == \
        ("jazz", None, "Loud", "hiphop")
    user.write_text("no equals sign here\n")
    with pytest.raises(GenreMapError, match="map.txt:1"):
        load_map(user)
    assert isinstance(GenreMap({spelling_key("x"): "y"}).lookup("X"), str)


# --- writing one file -----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", TAG_FORMATS)
def test_write_genre_changes_the_tag_only_and_keeps_mode_and_audio(tmp_path, encoded, ext) -> None:
    path = Path(shutil.copy(encoded[ext], tmp_path / f"w{ext}"))
    set_tags(path, ["Smooth"], artist="Ann")
    path.chmod(0o640)
    before = audio_hash(path)
    written = tags.write_genre(path, ["jazz"])
    assert written.previous == ["Smooth"] and written.tag_genre == "jazz"
    assert tags.read_tags(path) == tags.FileTags(genre="jazz", artist="Ann")
    assert audio_hash(path) == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert (written.size, written.mtime) == (path.stat().st_size, path.stat().st_mtime)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no copy left behind
    with pytest.raises(tags.TagError, match="already has a genre tag"):
        tags.write_genre(path, ["rock"], only_if_absent=True)
    tags.write_genre(path, written.previous)
    assert tags.read_tags(path).genre == "Smooth" and audio_hash(path) == before


def test_files_the_writer_refuses_say_why(tmp_path, encoded) -> None:
    readonly = Path(shutil.copy(encoded[".ogg"], tmp_path / "ro.ogg"))
    readonly.chmod(0o444)
    wav = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(wav, decode(encoded[".flac"], 22050)[0], 22050)
    cases = {readonly: "read-only file", wav: "unsupported format", tmp_path / "gone.mp3": "file vanished"}
    for path, reason in cases.items():
        with pytest.raises(tags.TagError, match=reason):
            tags.write_genre(path, ["jazz"])
    assert readonly.read_bytes() == encoded[".ogg"].read_bytes()


def test_a_copy_left_by_a_killed_write_is_not_taken_for_a_track() -> None:
    assert not is_audio_name(f".song.mp3.abc123{tags.TEMP_SUFFIX}") and is_audio_name("song.mp3")


# --- the whole flow on a scanned library ------------------------------------------------------------


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, encoded) -> dict:
    """A library of the five formats, twice: once tagged by a "ripper", once untagged; scanned once."""
    base = tmp_path_factory.mktemp("tagged-library")
    library = base / "library"
    expected: dict[str, tags.FileTags] = {}
    for folder in ("tagged", "untagged"):
        (library / folder).mkdir(parents=True)
    for ext in FORMATS:
        tagged = Path(shutil.copy(encoded[ext], library / "tagged" / f"t{ext}"))
        set_tags(tagged, ["Heavy Metal"], artist=f"Band {ext}", album="Loud Album", title=f"Song {ext}")
        expected[str(tagged)] = tags.FileTags("Heavy Metal", f"Band {ext}", None, "Loud Album", f"Song {ext}")
        untagged = Path(shutil.copy(encoded[ext], library / "untagged" / f"u{ext}"))
        expected[str(untagged)] = tags.FileTags()
    url = f"sqlite:///{base / 'db' / 'genretag.sqlite3'}"
    proc = run_genretag(url, "scan", str(library))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"library": library, "url": url, "expected": expected}


def track_tags(url: str) -> dict[str, tuple[tags.FileTags, str, int, float]]:
    with session_scope(url) as s:
        rows = s.execute(select(Track)).scalars().all()
        return {t.path: (tags.FileTags(t.tag_genre, t.tag_artist, t.tag_album_artist, t.tag_album, t.tag_title),
                         t.status, t.size, t.mtime) for t in rows}


def test_scan_reads_the_tags_of_each_format_and_query_shows_them(scanned) -> None:
    stored = track_tags(scanned["url"])
    assert {p: v[0] for p, v in stored.items()} == scanned["expected"]
    listed = run_genretag(scanned["url"], "query", "--tag-genre", "heavy metal", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["path"] for r in rows) == sorted(p for p in scanned["expected"] if "/tagged/" in p)
    assert {r["tag_genre"] for r in rows} == {"Heavy Metal"}
    exported = run_genretag(scanned["url"], "export", "--format", "json")
    artists = {r["path"]: r["tag_artist"] for r in json.loads(exported.stdout)}
    assert artists == {p: t.artist for p, t in scanned["expected"].items()}


def test_dry_run_write_rescan_and_undo(scanned) -> None:
    url, library = scanned["url"], scanned["library"]
    stored = track_tags(url)
    done = sorted(p for p, v in stored.items() if v[1] == "done")
    assert len(done) >= 8, stored  # m4a needs a decoder beyond libsndfile; the other four formats classify
    files = sorted(str(p) for p in library.rglob("*") if p.is_file())
    original = {p: Path(p).read_bytes() for p in files}
    hashes = {p: audio_hash(Path(p)) for p in files}

    dry = run_genretag(url, "tag", str(library), "--min-confidence", "0", "--include-uncertain")
    assert dry.returncode == 0, dry.stderr
    assert {p: Path(p).read_bytes() for p in files} == original
    would = sorted(line.split(": would write")[0] for line in dry.stdout.splitlines() if ": would write" in line)
    assert would == [p for p in done if "/untagged/" in p]

    wrote = run_genretag(url, "tag", str(library), "--write", "--min-confidence", "0", "--include-uncertain")
    assert wrote.returncode == 0, wrote.stderr
    after = track_tags(url)
    for p in files:
        if p in would:
            assert tags.read_tags(p).genre == after[p][0].genre and after[p][0].genre is not None
            assert (after[p][2], after[p][3]) == (os.stat(p).st_size, os.stat(p).st_mtime)
        else:  # tagged already, or never classified: not a byte changed
            assert Path(p).read_bytes() == original[p], p
        assert audio_hash(Path(p)) == hashes[p], p
    rescan = run_genretag(url, "scan", str(library))
    assert rescan.returncode == 0 and "queued 0" in rescan.stdout, rescan.stdout + rescan.stderr

    again = run_genretag(url, "tag", str(library), "--write", "--min-confidence", "0", "--include-uncertain")
    assert "written" not in again.stderr and again.returncode == 0

    undone = run_genretag(url, "tag", "--undo")
    assert undone.returncode == 0, undone.stderr
    assert sum(": restored:" in line for line in undone.stdout.splitlines()) == len(would)
    for p in files:
        assert tags.read_tags(p).genre == scanned["expected"][p].genre
        assert audio_hash(Path(p)) == hashes[p]
    assert {p: v[0].genre for p, v in track_tags(url).items()} == {p: t.genre for p, t in scanned["expected"].items()}
    rescan = run_genretag(url, "scan", str(library))
    assert "queued 0" in rescan.stdout, rescan.stdout + rescan.stderr
    with session_scope(url) as s:
        assert all(w.undone_at is not None for w in s.scalars(select(TagWrite)))


# --- agreement --------------------------------------------------------------------------------------


def result_for(path: str, genre: str) -> TrackResult:
    # uncertain=None: not assessed, so `genretag tag` judges it by GENRETAG_TAG_MIN_CONFIDENCE
    return TrackResult(path=path, genre=genre, confidence=0.9, uncertain=None, runner_up=None, vote_share=0.9, mean_probability=0.9, probabilities={genre: 0.9},
                       votes={genre: 9}, segments_used=10, segment_mode="all", duration=SECONDS, format="x",
                       model_version="v-test")


def test_agreement_counts_mapped_tags_per_genre_with_uncertain_apart(db_url) -> None:
    from sqlalchemy import update

    from genretag.db.models import Prediction
    from genretag.db.queries import done_tallies, library_stats, tag_agreement

    # (tag, predicted, uncertain): tags spelled as people do; one unmapped, one with no tag at all
    cases = [("Hip-Hop", "hiphop", False), ("Rap", "hiphop", None), ("rap", "pop", False),
             ("Heavy Metal", "metal", False), ("Death Metal", "rock", False), ("Classic Rock", "rock", None),
             ("Punk", "metal", True), ("Jazz", "jazz", True), ("Soundtrack", "classical", False), (None, "pop", False)]
    with session_scope(db_url) as s:
        scan_id = store.start_scan(s, "/m", "v1", "local").id
        ids = store.insert_tracks(s, [{"path": f"/m/{i}.mp3", "size": 1, "mtime": 0.0} for i in range(len(cases))],
                                  scan_id)
        for i, (tag, genre, uncertain) in enumerate(cases):
            track_id = ids[f"/m/{i}.mp3"]
            store.record_prediction(s, track_id, result_for(f"/m/{i}.mp3", genre))
            store.record_tags(s, track_id, tags.FileTags(genre=tag))
            s.execute(update(Prediction).where(Prediction.track_id == track_id).values(uncertain=uncertain))
    with session_scope(db_url) as s:
        a = tag_agreement(done_tallies(s, None))
        stats = library_stats(s).to_dict()
    assert (a.tracks, a.agree) == (6, 4)
    assert a.per_genre == {"hiphop": {"tracks": 3, "agree": 2, "rate": 2 / 3},
                           "metal": {"tracks": 2, "agree": 1, "rate": 0.5},
                           "rock": {"tracks": 1, "agree": 1, "rate": 1.0}}
    assert a.confusion == {"hiphop": {"hiphop": 2, "pop": 1}, "metal": {"metal": 1, "rock": 1}, "rock": {"rock": 1}}
    assert (a.uncertain_tracks, a.uncertain_agree, a.unmapped) == (2, 1, 1)
    assert stats["tag_agreement"]["rate"] == pytest.approx(4 / 6)
    assert stats["tag_agreement"]["uncertain"] == {"tracks": 2, "agree": 1}


def test_docs_list_every_default_spelling() -> None:
    from genretag.genremap import DEFAULT_SPELLINGS

    text = (Path(__file__).resolve().parents[1] / "docs" / "tags.md").read_text()
    missing = [s for spellings in DEFAULT_SPELLINGS.values() for s in spellings if s not in text]
    assert not missing


def test_reading_tags_never_opens_what_is_not_a_regular_file(tmp_path) -> None:
    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)  # opening it would block until a writer came
    with pytest.raises(tags.TagError, match="not a regular file"):
        tags.read_tags(fifo)
    assert tags.read_logged(tmp_path / "missing.mp3") == tags.FileTags()


def test_confident_only_uses_the_uncertain_flag_where_set_and_the_threshold_elsewhere() -> None:
    from genretag.db.queries import TagCandidate
    from genretag.tagging import TagPolicy, not_confident

    def candidate(confidence: float, uncertain: bool | None) -> TagCandidate:
        return TagCandidate(1, "/m/a.mp3", "jazz", confidence, uncertain, "v", None)

    default = TagPolicy(min_confidence=0.5)
    assert not_confident(candidate(0.3, False), default) is None  # assessed, not uncertain
    assert "uncertain" in not_confident(candidate(0.9, True), default)
    assert "below 0.50" in not_confident(candidate(0.3, None), default)  # never assessed: the threshold
    assert not_confident(candidate(0.6, None), default) is None
    assert "below 0.70" in not_confident(candidate(0.6, False), TagPolicy(min_confidence=0.7, explicit=True))
    assert not_confident(candidate(0.9, True), TagPolicy(include_uncertain=True)) is None
