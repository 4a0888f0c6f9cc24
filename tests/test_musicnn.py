"""The musicnn port against musicnn itself, on real GTZAN clips.

``tests/data/musicnn_reference.npz`` holds musicnn 0.1.0's own pooled features, penultimate
features and MSD tag probabilities per patch, written by ``scripts/musicnn_reference.py`` in a
separate venv (musicnn is never installed here). The port must give the same within 1e-4,
relative to each value's size where it exceeds 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genretag import audio, features
from genretag.features import MUSICNN

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as npz:
        return dict(npz)


def musicnn_patches(path: Path) -> np.ndarray:
    """musicnn's ``batch_data`` with the float32 fix: the whole clip at 16 kHz, non-overlapping 187-frame patches."""
    import librosa

    y, sr = librosa.load(path, sr=16000)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, hop_length=256, n_fft=512, n_mels=96).T.astype(np.float32)
    rep = np.log10(10000 * mel + 1)
    return np.stack([rep[t: t + 187] for t in range(0, rep.shape[0] - 187 + 1, 187)])


@pytest.fixture(scope="module")
def patches(reference, gtzan_dir) -> np.ndarray:
    return np.concatenate([musicnn_patches(gtzan_dir / clip) for clip in reference["clips"]])


def close(ours: np.ndarray, theirs: np.ndarray) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=TOLERANCE, atol=TOLERANCE)


def test_port_matches_musicnn(reference, patches):
    from genretag.training.musicnn import load_backbone

    assert len(patches) == reference["patches"].sum() == 30
    np.testing.assert_allclose(patches.mean(axis=(1, 2)), reference["input_mean"], atol=1e-5)  # same input
    pooled, penultimate, tags = (np.asarray(a) for a in load_backbone()(patches[..., None], training=False))
    close(pooled[:, :753], reference["mean_pool"])
    close(pooled[:, 753:], reference["max_pool"])
    close(penultimate, reference["penultimate"])
    close(tags, reference["tags"])
    # Every patch has features of its own (musicnn's extractor repeats patch 0's penultimate row).
    assert np.abs(np.diff(reference["penultimate"], axis=0)).max(axis=1).min() > 0.1


def test_kind_is_musicnns_patches(reference, patches, gtzan_dir):
    """Our segments' maps are musicnn's patches; only frame 0 of a later patch sees its neighbour's audio.

    The same decoded audio on both sides (musicnn's ``librosa.load``): this checks the feature function;
    the decoder's fidelity is tests/test_audio.py's.
    """
    import librosa

    y, _ = librosa.load(gtzan_dir / reference["clips"][0], sr=MUSICNN.sr)
    maps = features.musicnn_logmel(features.segment(y, MUSICNN), MUSICNN)
    theirs = patches[: reference["patches"][0]]
    assert maps.shape == theirs.shape == (10, *MUSICNN.shape)
    close(maps[0], theirs[0])
    close(maps[1:, 1:], theirs[1:, 1:])
    assert np.abs(maps[1:, 0] - theirs[1:, 0]).max() > 0.1  # the edge frame does differ: the test can tell


def test_head_folded_into_the_network(patches):
    """The exported network (backbone, then the head with its standardisation and temperature folded into one
    Dense layer) gives the head's own probabilities on the backbone's pooled features."""
    from genretag.training.musicnn import load_backbone, pooled_features
    from genretag.training.pretrained import Head, network

    rng = np.random.default_rng(0)
    pooled = pooled_features(load_backbone(), patches)
    head = Head(pooled.mean(axis=0), pooled.std(axis=0) + 1e-6, rng.normal(size=(10, pooled.shape[1])) * 0.05,
                rng.normal(size=10), C=1.0)
    ours = np.asarray(network(head, temperature=0.7)(patches[..., None], training=False))
    np.testing.assert_allclose(ours, head.probabilities(pooled, temperature=0.7), atol=1e-5)
    assert np.abs(ours - head.probabilities(pooled)).max() > 0.01  # the temperature is in there


# --- the shipped default bundle: musicnn with the GTZAN head ---------------------------------------


@pytest.fixture(scope="module")
def shipped():
    from genretag.bundle import load_bundle
    from genretag.config import PACKAGED_MODEL

    return load_bundle(PACKAGED_MODEL)


def test_litert_export_matches_the_keras_port(shipped, reference, gtzan_dir):
    """The bundle's LiteRT network (what classify runs) against the Keras port rebuilt from its weights, on the
    musicnn kind's maps of real clips."""
    from genretag.training.export import keras_model

    maps = np.concatenate([features.extract(audio.load(gtzan_dir / c, MUSICNN.sr), MUSICNN) for c in reference["clips"]])
    litert = shipped.predictor(threads=1)(maps)
    keras = np.asarray(keras_model(shipped)(shipped.normalise(maps), training=False))
    np.testing.assert_allclose(litert, keras, atol=1e-5)
    assert litert.argmax(axis=1).tolist() != [0] * len(maps)  # a real network, not a constant
    top = [shipped.labels[i] for i in litert.reshape(3, 10, -1).mean(axis=1).argmax(axis=1)]
    assert top == ["blues", "classical", "metal"]


def test_shipped_export_runs_the_timbral_convolutions_unfolded(shipped):
    """The timbral filters (7 x 38 and 7 x 67 mel bins) act on mel bins gathered into channels, not on one
    channel with a wide window, the form whose XNNPACK pointers cost 39 MB more (training/musicnn.py)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=shipped.files["model.tflite"])
    filters = {tuple(int(n) for n in t["shape"]) for t in interpreter.get_tensor_details() if len(t["shape"]) == 4}
    assert {(204, 7, 1, 38), (204, 7, 1, 67)} <= filters
    assert not {(204, 7, 38, 1), (204, 7, 67, 1)} & filters


def test_shipped_bundle_is_small_names_its_kind_and_keeps_the_licence(shipped):
    from genretag.config import PACKAGED_MODEL, PACKAGED_MODELS, Settings

    assert PACKAGED_MODEL.stat().st_size < 10e6
    assert shipped.architecture == "musicnn" and shipped.features == MUSICNN
    assert b"ISC" in shipped.files["LICENSE.musicnn.txt"] and b"Jordi Pons" in shipped.files["LICENSE.musicnn.txt"]
    assert Settings().model_path == Settings(model_path="default").model_path == PACKAGED_MODEL
    assert Settings(model_path="cnn").model_path == PACKAGED_MODELS / "cnn.genretag"  # --model cnn


def test_shipped_bundle_is_calibrated_on_held_out_artists(shipped):
    """The temperature on the track vote was fitted on out-of-fold tracks of CV folds that held whole artist
    blocks out, and the head's own temperature and C come from the same CV."""
    assert shipped.descriptor is None and shipped.calibration["method"] == "temperature"
    evidence = shipped.metrics["calibration"]
    assert evidence["fusion"]["weight"] == 1.0 and evidence["folds_by"] == "artist"
    assert evidence["cnn_cv"].endswith("cv/musicnn-artist.json") and evidence["out_of_fold_tracks"] >= 250
    assert evidence["threshold"]["precision"] >= 0.85
    assert shipped.training["cv"]["folds_by"] == "artist" and shipped.training["head"]["C"] == 0.003


def test_a_bundle_of_other_log_mel_parameters_is_refused(shipped, tmp_path):
    import dataclasses

    from genretag.bundle import BundleError, load_bundle

    other = dataclasses.replace(shipped, features=dataclasses.replace(MUSICNN, n_mels=128))
    with pytest.raises(BundleError, match="n_mels"):
        load_bundle(other.save(tmp_path / "other.genretag"))
