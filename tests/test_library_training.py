"""Training on a library's own tags: labels from the database, splits by artist, a model with that taxonomy.

The library is built here from ../shared/gtzan clips tagged (with mutagen) in a made-up taxonomy;
a tiny model is trained in the test by the real ``genretag train --from-library``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mutagen
import pytest

from processes import run_genretag
from genretag.db import session_scope, store
from genretag.db.queries import LabelRow, library_labels
from genretag.genremap import label_key, load_map
from genretag.bundle import read_meta
from genretag.tags import FileTags
from genretag.training.library import group_sides

# GTZAN genre -> the user's label, spelt as carelessly as real tags are
TAXONOMY = {"jazz": ["Smooth", "smooth", " SMOOTH "], "metal": ["Loud", "loud"], "classical": ["Quiet", "Quiet  "]}


def test_labels_are_normalised_tags_with_enough_tracks_or_the_mapped_genres(db_url) -> None:
    tagged = [("Smooth", "A"), ("smooth ", "A"), ("Smooth", "B"), ("Loud", None), ("Loud; Heavy Metal", "C"),
              ("loud", "D"), ("Odd", "E"), ("Heavy Metal", "F")]
    with session_scope(db_url) as s:
        scan_id = store.start_scan(s, "/m", "v", "local").id
        ids = store.insert_tracks(s, [{"path": f"/m/{i}.ogg", "size": 1, "mtime": 0.0} for i in range(len(tagged))],
                                  scan_id)
        for i, (genre, artist) in enumerate(tagged):
            store.record_tags(s, ids[f"/m/{i}.ogg"], FileTags(genre=genre, artist=artist, album="Same"))
        own = library_labels(s, ["/m"], min_tracks=3)
        mapped = library_labels(s, [], min_tracks=1, genre_map=load_map())
        elsewhere = library_labels(s, ["/other"], min_tracks=1)
    assert [(r.path, r.label) for r in own.rows] == [(f"/m/{i}.ogg", "Smooth" if i < 3 else "Loud") for i in range(6)]
    assert own.dropped == {"Heavy Metal": 1, "Odd": 1}
    assert [r.group for r in own.rows] == ["artist:a", "artist:a", "artist:b", "album:same", "artist:c", "artist:d"]
    assert {r.label for r in mapped.rows} == {"metal"} and mapped.dropped == {"(unmapped)": 6}  # "Smooth", "Loud", "Odd" are in no table
    assert elsewhere.rows == []


def test_group_sides_never_split_a_group_and_keep_each_label_training() -> None:
    rows = [LabelRow(f"/{label}/{g}/{i}", label, f"{label}-{g}") for label in "xyz" for g in range(5) for i in range(3)]
    rows.append(LabelRow("/w/0", "w", "solo"))  # a label with one group always trains
    sides = group_sides(rows, 0.4, seed=1)
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r.group, set()).add(sides[r.path])
    assert all(len(s) == 1 for s in by_group.values())
    for label in "xyz":
        valid = sum(sides[r.path] == "valid" for r in rows if r.label == label)
        assert 0 < valid <= 0.4 * 15
    assert sides["/w/0"] == "train"


def tag_copy(src: Path, dest: Path, genre: str, artist: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest)
    audio = mutagen.File(dest)
    audio["genre"], audio["artist"], audio["title"] = [genre], [artist], [dest.stem]
    audio.save()
    return dest


@pytest.fixture(scope="module")
def taxonomy_library(tmp_path_factory, gtzan_dir) -> Path:
    """4 artists x 2 clips per label to train on; one more artist per label held out (under heldout/)."""
    root = tmp_path_factory.mktemp("taxonomy-library")
    for genre, spellings in TAXONOMY.items():
        clips = sorted((gtzan_dir / genre).glob(f"{genre}.*.opus"))[:10]
        for i, clip in enumerate(clips):
            artist = i // 2
            side = "heldout" if artist == 4 else "train"
            tag_copy(clip, root / side / f"{genre}-artist{artist}" / clip.name, spellings[i % len(spellings)],
                     f"{genre} artist {artist}")
    return root


def test_train_from_library_learns_the_users_taxonomy_and_stats_measures_it_on_a_held_out_artist(
    tmp_path, taxonomy_library, training_cache
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    first = run_genretag(url, "scan", str(taxonomy_library / "train"))
    assert first.returncode == 0, first.stderr[-3000:]

    model = tmp_path / "mine.genretag"
    trained = run_genretag(url, "train", "--from-library", str(taxonomy_library / "train"), "--min-tracks", "3",
                       "--valid-fraction", "0.25", "--epochs", "4", "--no-augment", "--threads", "1",
                       "--out", str(model), cache_dir=training_cache)
    assert trained.returncode == 0, trained.stderr[-3000:]
    meta = read_meta(model)
    assert meta["labels"] == ["Loud", "Quiet", "Smooth"]
    assert "held-out artists/albums: 6 tracks (trained on 18)" in trained.stdout, trained.stdout
    for label in meta["labels"]:
        assert label in trained.stdout
    assert any(training_cache.rglob("*.npz"))  # the feature cache GTZAN training uses

    held = run_genretag(url, "scan", str(taxonomy_library / "heldout"), model_path=model)
    assert held.returncode == 0, held.stderr[-3000:]
    listed = [r for r in json.loads(run_genretag(url, "query", "--model-version", meta["version"], "--json").stdout)
              if r["genre"] is not None]
    assert len(listed) == 6 and {r["genre"] for r in listed} <= set(meta["labels"])
    agree = sum(label_key(r["genre"]) == label_key(r["tag_genre"]) for r in listed)

    stats = json.loads(run_genretag(url, "stats", "--json", "--model-version", meta["version"], model_path=model).stdout)
    agreement = stats["tag_agreement"]
    assert agreement["tracks"] + agreement["uncertain"]["tracks"] == 6
    assert agreement["agree"] + agreement["uncertain"]["agree"] == agree
    assert set(agreement["per_genre"]) <= set(meta["labels"])
    assert set(stats["by_genre"]) <= set(meta["labels"])
    text = run_genretag(url, "stats", "--model-version", meta["version"], model_path=model).stdout
    assert "agreement with the files' genre tags" in text
