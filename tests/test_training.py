"""Training: GTZAN layouts, splits by track, augmentation, and a tiny real training run on generated audio."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_synthetic_clip

from genretag.cli import cli
from genretag.training import augment as aug
from genretag.training.datasets import Clip, DatasetError, TrackFeatures, discover, load_features
from genretag.training.splits import as_arrays, by_side, dataset_sides, kfold_sides, read_split_lists, stratified_sides


def _tracks(counts: dict[str, int], segments: int = 3, excerpt: bool = False, offset: int = 0) -> list[TrackFeatures]:
    out = []
    for genre, n in counts.items():
        for i in range(offset, offset + n):
            clip = Clip(f"{genre}.{i:05d}", genre, Path(f"{genre}.{i:05d}.wav"), excerpt)
            out.append(TrackFeatures(clip, np.full((1 if excerpt else segments, 130, 13), i, np.float32)))
    return out


# --- layouts -------------------------------------------------------------------------------------


def test_subset_layout_with_excerpts_and_splits(tmp_path: Path) -> None:
    root = tmp_path / "gtzan"
    for i in range(2):
        write_synthetic_clip(root / "blues" / f"blues.{i:05d}.opus", "tones", i, seconds=4, sr=16000, format="OGG", subtype="OPUS")
    write_synthetic_clip(root / "rock" / "rock.00000.opus", "noise", 7, seconds=4, sr=16000, format="OGG", subtype="OPUS")
    write_synthetic_clip(root / "excerpts" / "rock" / "rock.00050.opus", "noise", 8, seconds=2.5, sr=16000, format="OGG", subtype="OPUS")
    (root / "splits").mkdir()
    (root / "splits" / "test_filtered.txt").write_text("blues/blues.00001.wav\nrock/rock.00050.wav\n")
    (root / "splits" / "train_filtered.txt").write_text("blues/blues.00000.wav\n")

    dataset = discover(root)

    assert dataset.layout == "subset"
    assert [c.track_id for c in dataset.clips] == ["blues.00000", "blues.00001", "rock.00000"]
    assert [(c.track_id, c.excerpt) for c in dataset.excerpts] == [("rock.00050", True)]
    assert dataset.splits_dir == root / "splits"
    sides, _ = dataset_sides(dataset)
    assert sides == {"blues.00001": "test", "rock.00050": "test", "blues.00000": "train"}
    loaded = load_features(dataset.clips + dataset.excerpts, tmp_path / "cache")
    assert [len(t.maps) for t in loaded] == [1, 1, 1, 1]  # 4 s clips: one full segment; 2.5 s excerpt: padded


def test_kaggle_layout_skips_a_broken_clip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    genres = tmp_path / "kaggle" / "Data" / "genres_original"
    write_synthetic_clip(genres / "jazz" / "jazz.00053.wav", "tones", 1, seconds=7)
    (genres / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(64))

    dataset = discover(tmp_path / "kaggle")
    with caplog.at_level(logging.WARNING):
        loaded = load_features(dataset.clips, None)

    assert dataset.layout == "kaggle" and dataset.root == genres
    assert len(dataset.clips) == 2
    assert [t.clip.track_id for t in loaded] == ["jazz.00053"]
    assert loaded[0].maps.shape == (2, 130, 13)
    assert "jazz.00054.wav" in caplog.text


def test_shifted_views_are_the_segments_half_a_segment_later(tmp_path: Path) -> None:
    """A 7.5-s clip: segments at 0 and 3 s, shifted views at 1.5 and 4.5 s; trailing parts are dropped."""
    from genretag.features import FEATURES, extract
    from genretag.audio import load

    path = tmp_path / "Data" / "genres_original" / "jazz" / "jazz.00001.wav"
    write_synthetic_clip(path, "tones", 1, seconds=7.5)
    (track,) = load_features(discover(tmp_path).clips, None)
    assert track.maps.shape == track.shifted.shape == (2, 130, 13)
    y = load(path, FEATURES.sr)
    np.testing.assert_allclose(track.shifted, extract(y[FEATURES.segment_samples // 2:]), atol=1e-4)
    x, y_, owner = as_arrays([track], ["jazz"], shifted=True)
    assert len(x) == 4 and list(owner) == [0, 0, 0, 0]
    assert len(as_arrays([track], ["jazz"])[0]) == 2


def test_original_au_layout_and_feature_cache(tmp_path: Path) -> None:
    write_synthetic_clip(tmp_path / "genres" / "metal" / "metal.00003.au", "noise", 3, seconds=3.5, format="AU", subtype="PCM_16")
    dataset = discover(tmp_path)
    assert dataset.layout == "original"
    first = load_features(dataset.clips, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "features").glob("*.npz"))) == 1
    again = load_features(dataset.clips, tmp_path / "cache")
    np.testing.assert_array_equal(first[0].maps, again[0].maps)


def test_folder_without_gtzan_is_refused(tmp_path: Path) -> None:
    (tmp_path / "excerpts" / "blues").mkdir(parents=True)
    with pytest.raises(DatasetError):
        discover(tmp_path)


# --- splits --------------------------------------------------------------------------------------


def test_fault_filtered_lists_match_by_clip_name(tmp_path: Path) -> None:
    (tmp_path / "train_filtered.txt").write_text("blues/blues.00012.wav\n\n")
    (tmp_path / "test_filtered.txt").write_text("rock/rock.00001.wav\n")
    assert read_split_lists(tmp_path) == {"blues.00012": "train", "rock.00001": "test"}


def test_no_track_is_on_two_sides() -> None:
    tracks = _tracks({"blues": 30, "rock": 8, "pop": 6})
    excerpts = _tracks({"rock": 5, "pop": 3}, excerpt=True, offset=100) + _tracks({"rock": 2}, excerpt=True, offset=0)
    ids = [t.clip.track_id for t in tracks]
    genres = [t.clip.genre for t in tracks]

    sides = stratified_sides(ids, genres, {"valid": 0.2, "test": 0.2}, seed=3)
    groups = by_side(tracks, excerpts, sides)
    for genre in ("blues", "rock", "pop"):  # thin genres still reach every side
        assert all(any(t.clip.genre == genre for t in groups[s]) for s in ("train", "valid", "test"))
    full_ids = {s: {t.clip.track_id for t in g if not t.clip.excerpt} for s, g in groups.items()}
    assert sum(len(v) for v in full_ids.values()) == len(tracks)
    assert not (full_ids["train"] & full_ids["valid"]) and not (full_ids["train"] & full_ids["test"])
    # An excerpt of a clip on an evaluation side stays out of training; the others train.
    trained_excerpts = {t.clip.track_id for t in groups["train"] if t.clip.excerpt}
    assert trained_excerpts == {e.clip.track_id for e in excerpts if sides.get(e.clip.track_id, "train") == "train"}

    # Segment level: every segment of a track is on its track's side.
    for side, group in groups.items():
        _, _, owner = as_arrays(group, ("blues", "pop", "rock"))
        assert set(owner) <= set(range(len(group)))
        assert len(owner) == sum(len(t.maps) for t in group)

    folds = kfold_sides(ids, genres, k=4, seed=0)
    held = [t for f in folds for t, s in f.items() if s == "valid"]
    assert sorted(held) == sorted(ids)  # each track held out exactly once


def test_artist_blocks_are_runs_of_one_genre_on_one_list(gtzan_dir) -> None:
    """On the real fault-filtered lists: a block is consecutive listed clips of one genre on one side,
    a new block starts wherever the side changes, and a clip left off the lists does not cut a run."""
    from genretag.training.splits import artist_blocks

    sides = read_split_lists(gtzan_dir / "splits")
    blocks = artist_blocks(sides)
    assert set(blocks) == set(sides)
    members: dict[str, list[str]] = {}
    for clip, block in blocks.items():
        members.setdefault(block, []).append(clip)
    for block, clips in members.items():
        genre, side, first = block.split(":")
        assert {c.split(".")[0] for c in clips} == {genre} and {sides[c] for c in clips} == {side}
        assert min(clips) == f"{genre}.{first}"
    listed = sorted(sides)
    for before, after in zip(listed, listed[1:]):  # neighbours on the lists share a block iff genre and side agree
        same = before.split(".")[0] == after.split(".")[0] and sides[before] == sides[after]
        assert (blocks[before] == blocks[after]) == same
    assert blocks["blues.00000"] == blocks["blues.00011"] != blocks["blues.00012"]  # valid 00-11, test 12-28
    assert len({b for c, b in blocks.items() if sides[c] != "test"}) == 97


def test_folds_by_artist_hold_whole_blocks_out_excerpts_included(gtzan_dir) -> None:
    """Every block is held out by exactly one fold, whole: its tracks and the excerpts of its missing clips,
    which therefore never train beside their artist's held-out tracks."""
    from genretag.training.datasets import discover
    from genretag.training.splits import artist_blocks, fold_excerpts

    dataset = discover(gtzan_dir)
    sides = read_split_lists(gtzan_dir / "splits")
    blocks = artist_blocks(sides)
    pool = [c for c in dataset.clips if sides.get(c.track_id) in ("train", "valid")]
    excerpts = [TrackFeatures(c, np.zeros((1, 1, 1)), np.zeros((0, 1, 1))) for c in dataset.excerpts
                if sides.get(c.track_id) in ("train", "valid")]
    folds = kfold_sides([c.track_id for c in pool], [c.genre for c in pool], 5, 0, blocks)
    held_tracks = [c.track_id for f in folds for c in pool if f[c.track_id] == "valid"]
    assert sorted(held_tracks) == sorted(c.track_id for c in pool)  # each track held out once
    for fold in folds:
        held_blocks = {blocks[c.track_id] for c in pool if fold[c.track_id] == "valid"}
        trained_blocks = {blocks[c.track_id] for c in pool if fold[c.track_id] == "train"}
        assert held_blocks and not held_blocks & trained_blocks
        trained = fold_excerpts(excerpts, fold)
        assert trained and not {blocks[e.clip.track_id] for e in trained} & held_blocks
        assert len(trained) < len(excerpts)  # some excerpts sit in held-out blocks: the test can tell
    genres_held = [{c.genre for c in pool if f[c.track_id] == "valid"} for f in folds]
    assert all(len(g) >= 5 for g in genres_held)  # stratified: each fold holds out most genres


def test_descriptor_search_cross_validates_by_artist_on_the_real_table(gtzan_dir, tmp_path: Path) -> None:
    """``train --arch dense`` on the real table and lists: folds hold artist blocks out, and every train+valid
    row gets an out-of-fold prediction (one small trial, so it stays quick)."""
    report = tmp_path / "search.json"
    result = CliRunner().invoke(cli, ["train", "--arch", "dense", "--data", str(gtzan_dir), "--folds", "3",
                                      "--trials", "1", "--report", str(report)])
    assert result.exit_code == 0, result.output
    summary = json.loads(report.read_text())
    (trial,) = summary["trials"]
    assert summary["folds_by"] == trial["folds_by"] == "artist" and summary["rows"] == 640
    assert len(trial["oof"]) == 640 and all(abs(sum(p) - 1) < 1e-4 for p in trial["oof"].values())
    assert 0.2 < trial["balanced_track_accuracy"]["mean"] < 0.75  # new artists: far below the same-artist 0.8


# --- augmentation --------------------------------------------------------------------------------


def test_augmentation_keeps_shapes_and_changes_values() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 130, 13)).astype(np.float32)
    out = aug.augment(x, rng)
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.allclose(out, x)
    rolled = aug.roll_time(x, rng, 130)
    np.testing.assert_allclose(np.sort(rolled, axis=1), np.sort(x, axis=1))  # a roll only reorders frames
    masked = aug.mask(x, rng, axis=2, count=1, width=13)
    assert masked.shape == x.shape and (masked == 0).any()
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
    xm, ym = aug.mixup(x, y, rng, alpha=0.4)
    assert xm.shape == x.shape and ym.shape == y.shape
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, rtol=1e-6)


# --- a tiny real training run --------------------------------------------------------------------


def test_tiny_training_separates_tones_from_noise(synthetic_gtzan: Path, training_cache: Path, tmp_path: Path) -> None:
    from genretag.bundle import load_bundle
    from genretag.training.evaluate import predict_tracks, track_metrics

    out = tmp_path / "tiny.genretag"
    result = CliRunner().invoke(cli, [
        "train", "--data", str(synthetic_gtzan), "--arch", "seed", "--epochs", "12", "--patience", "12",
        "--learning-rate", "0.002", "--threads", "2", "--seed", "1", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output

    bundle = load_bundle(out)
    assert set(bundle.files) == {"model.tflite", "model.weights.h5"}  # the runtime export beside the weights
    assert bundle.version.startswith("2026.11-seed-")
    data = bundle.training["data"]
    assert data["layout"] == "kaggle" and data["split"].startswith("stratified")
    assert data["train"]["tracks"] == {"blues": 14, "metal": 14}
    assert bundle.mean.shape == bundle.std.shape == (13,)

    dataset = discover(synthetic_gtzan)
    sides, _ = dataset_sides(dataset)
    held_out = [t for t in load_features(dataset.clips, training_cache) if sides[t.clip.track_id] == "test"]
    assert len(held_out) == 6
    metrics = track_metrics(held_out, predict_tracks(bundle.predictor(threads=1), held_out), bundle.labels)
    assert metrics["balanced_track_accuracy"] >= 0.9, metrics  # chance is 0.5


def test_train_without_tensorflow_says_how_to_get_it_in_one_line(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['tensorflow'] = None; from genretag.cli import main; "
            "sys.argv = ['genretag', 'train', '--data', sys.argv[1]]; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "Error: training needs TensorFlow, which is not installed: pip install 'genretag[train]'"]


def test_cross_validation_reports_every_fold(synthetic_gtzan: Path, training_cache: Path, tmp_path: Path) -> None:
    report = tmp_path / "cv.json"
    result = CliRunner().invoke(cli, [
        "train", "--data", str(synthetic_gtzan), "--arch", "seed+gap", "--recipe", "ours", "--epochs", "3",
        "--folds", "2", "--shifted", "--report", str(report),
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(report.read_text())
    assert summary["folds"] == 2 and len(summary["per_fold"]) == 2
    assert summary["folds_by"] == "track" and "by track" in summary["split"]  # no lists here: no artist blocks
    assert summary["settings"]["shifted"] is True
    # An ensemble's CV reports each member alone, on the same folds.
    assert [m["architecture"] for m in summary["members"]] == ["seed", "gap"]
    assert all(set(m["balanced_track_accuracy"]) == {"mean", "std"} for m in summary["members"])
    assert "member gap alone" in result.output
    assert set(summary["with_shifted_segments"]["balanced_track_accuracy"]) == {"mean", "std"}
    # CV runs over the clips not on the (stratified) test side: 17 per genre here.
    assert summary["data"]["tracks"]["tracks"] == {"blues": 17, "metal": 17}
    assert set(summary["per_genre_recall"]["blues"]) == {"mean", "std"}
    assert "balanced track accuracy" in result.output
    # Each pool track once, out of fold, with its vote's mean probabilities (what calibration fits on).
    oof = summary["out_of_fold"]
    assert len(oof["tracks"]) == 34 and len({r["track_id"] for r in oof["tracks"]}) == 34
    assert {r["fold"] for r in oof["tracks"]} == {1, 2}
    assert all(len(r["probabilities"]) == len(oof["labels"]) and abs(sum(r["probabilities"]) - 1) < 1e-4
               for r in oof["tracks"])


@pytest.mark.parametrize(("balance", "share"), [("weights", 10 / 110), ("sqrt", 10**0.5 / (10**0.5 + 10)), ("sampling", 0.5)])
def test_batches_balance_the_classes_as_asked(balance: str, share: float) -> None:
    from genretag.training.train import TrainConfig, training_batches

    y = np.array([0] * 100 + [1] * 10)
    x = np.zeros((110, 130, 13), np.float32)
    batches = training_batches(x, y, 2, TrainConfig(balance=balance, batch_size=110, augment=False))
    drawn = []
    for _ in range(200):
        drawn.append(y[batches.order])
        batches.on_epoch_end()
    assert np.mean(np.concatenate(drawn) == 1) == pytest.approx(share, abs=0.02)
    xb, yb = batches[0][:2]
    assert xb.shape == (110, 130, 13, 1) and yb.shape == (110, 2)
