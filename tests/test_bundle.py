"""The model bundle: export and round trip, refusals, the LiteRT predictor against Keras, the shipped model."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import numpy as np
import pytest

from genretag import audio, descriptors, features
from genretag.bundle import (
    DESCRIPTOR_TFLITE, DESCRIPTOR_WEIGHTS, GENRES, KERAS_WEIGHTS, Bundle, BundleError, load_bundle, read_meta,
)
from genretag.config import PACKAGED_MODELS
from genretag.features import FEATURES, MfccParams
from genretag.fusion import Fusion
from genretag.training import export
from genretag.training.networks import KerasPredictor, build, ensemble_of, members

TOLERANCE = 1e-5  # the largest difference in any probability allowed between LiteRT and Keras


@pytest.fixture(scope="module")
def seed_net():
    return build("seed", FEATURES.shape, len(GENRES))


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    rng = np.random.default_rng(0)
    return Bundle(
        architecture="seed",
        version="test-1",
        mean=rng.normal(size=13).astype(np.float32),
        std=rng.uniform(1, 2, size=13).astype(np.float32),
        training={"tracks": 3},
        metrics={"balanced_track_accuracy": 0.5},
        calibration={"method": "temperature", "temperature": 1.3},
    )


def maps(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *FEATURES.shape)).astype(np.float32) * 50


def test_round_trip_keeps_the_export_the_weights_and_the_metadata(seed_net, bundle, tmp_path):
    path = export.save(seed_net, bundle, tmp_path / "m.genretag")
    assert set(zipfile.ZipFile(path).namelist()) == {"meta.json", "model.tflite", "model.weights.h5"}
    meta = read_meta(path)
    assert meta["format"] == 2 and meta["features"] == {"kind": "mfcc", **FEATURES.to_dict()}
    loaded = load_bundle(path)
    assert loaded.version == "test-1" and loaded.labels == GENRES and loaded.architecture == "seed"
    assert loaded.features == FEATURES
    np.testing.assert_array_equal(loaded.mean, bundle.mean)
    np.testing.assert_array_equal(loaded.std, bundle.std)
    assert loaded.training == {"tracks": 3} and loaded.metrics == {"balanced_track_accuracy": 0.5}
    assert loaded.calibration == {"method": "temperature", "temperature": 1.3} and loaded.descriptor is None
    x = maps(20)
    want = KerasPredictor(seed_net, bundle)(x)
    np.testing.assert_allclose(loaded.predictor(threads=1)(x), want, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(KerasPredictor(export.keras_model(loaded), loaded)(x), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("architecture", ["seed", "gap", "seed+gap"])
def test_every_architecture_exports_and_litert_matches_keras(bundle, architecture):
    net = build(architecture, FEATURES.shape, len(GENRES))
    out = export.exported(net, dataclasses.replace(bundle, architecture=architecture))
    x = maps(11, seed=3)
    np.testing.assert_allclose(out.predictor(threads=2)(x), KerasPredictor(net, out)(x), rtol=0, atol=TOLERANCE)


def test_an_ensemble_averages_its_members(bundle, tmp_path):
    seed, gap = build("seed", FEATURES.shape, len(GENRES)), build("gap", FEATURES.shape, len(GENRES))
    gap.set_weights([w + np.random.default_rng(2).normal(0, 0.05, w.shape).astype(w.dtype) for w in gap.get_weights()])
    joined = dataclasses.replace(bundle, architecture="seed+gap", version="ens-1")
    path = export.save(ensemble_of([seed, gap], "seed+gap", FEATURES.shape, len(GENRES)), joined, tmp_path / "e.genretag")
    loaded = load_bundle(path)
    assert loaded.architecture == "seed+gap" and members(loaded.architecture) == ["seed", "gap"]
    x = maps(6)
    want = (KerasPredictor(seed, bundle)(x) + KerasPredictor(gap, bundle)(x)) / 2
    np.testing.assert_allclose(loaded.predictor(threads=1)(x), want, rtol=0, atol=TOLERANCE)


def test_a_segment_gets_the_same_probabilities_whatever_its_batch(seed_net, bundle):
    """A batch runs segment by segment on one allocation: no batch size leaks into a result."""
    predict = export.exported(seed_net, bundle).predictor(threads=1)
    x = maps(19)
    alone = np.concatenate([predict(x[i: i + 1]) for i in range(len(x))])
    for n in (1, 7, 8, 9, len(x)):
        np.testing.assert_array_equal(predict(x[:n]), alone[:n])
    np.testing.assert_allclose(alone.sum(axis=1), 1.0, rtol=1e-5)
    assert predict(x[:0]).shape == (0, len(GENRES))


def test_mismatched_feature_parameters_are_refused(seed_net, bundle, tmp_path):
    other = dataclasses.replace(bundle, features=MfccParams(hop_length=256))
    with pytest.raises(BundleError, match="hop_length"):
        load_bundle(export.save(seed_net, other, tmp_path / "other.genretag"))


def test_another_kind_of_features_is_refused(seed_net, bundle, tmp_path):
    path = export.save(seed_net, bundle, tmp_path / "m.genretag")
    meta = read_meta(path)
    meta["features"]["kind"] = "logmel"
    with zipfile.ZipFile(path) as zf:
        members_ = {n: zf.read(n) for n in zf.namelist() if n != "meta.json"}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        for name, data in members_.items():
            zf.writestr(name, data)
    with pytest.raises(BundleError, match="kind"):
        load_bundle(path)


def test_not_a_bundle_and_a_bundle_without_its_export_are_refused(bundle, tmp_path):
    path = tmp_path / "junk.genretag"
    path.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a genretag model bundle"):
        read_meta(path)
    with pytest.raises(BundleError, match="model.tflite"):
        bundle.save(tmp_path / "no-export.genretag")


def test_a_format_1_bundle_is_refused_and_converts_keeping_its_version(seed_net, bundle, tmp_path):
    old = tmp_path / "old.genretag"
    meta = {**bundle.meta(), "format": 1, "features": FEATURES.to_dict()}
    with zipfile.ZipFile(old, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr(KERAS_WEIGHTS, export.keras_weights(seed_net))
    with pytest.raises(BundleError, match="format 1.*python -m genretag.training.export"):
        load_bundle(old)
    new = load_bundle(export.convert(old, tmp_path / "new.genretag"))
    assert (new.version, new.architecture, new.training) == ("test-1", "seed", {"tracks": 3})
    x = maps(9)
    np.testing.assert_allclose(new.predictor(threads=1)(x), KerasPredictor(seed_net, bundle)(x), rtol=0, atol=TOLERANCE)


def test_unknown_architectures_are_refused():
    with pytest.raises(BundleError, match="unknown architecture 'resnet'"):
        members("seed+resnet")


CNN_MODEL = PACKAGED_MODELS / "cnn.genretag"  # --model cnn; the default (musicnn) is tested in test_musicnn.py


def test_shipped_cnn_model_is_complete_and_small():
    meta = read_meta(CNN_MODEL)
    assert meta["format"] == 2 and meta["labels"] == list(GENRES)
    assert len(meta["normalisation"]["mean"]) == FEATURES.n_mfcc
    assert CNN_MODEL.stat().st_size < 3 * 1024 * 1024
    assert set(load_bundle(CNN_MODEL).files) == {"model.tflite", "model.weights.h5", DESCRIPTOR_TFLITE,
                                                 DESCRIPTOR_WEIGHTS}
    assert meta["calibration"]["method"] == "temperature" and meta["calibration"]["temperature"] > 1
    assert meta["descriptor"]["columns"] == list(descriptors.COLUMNS) and 0 < meta["descriptor"]["fusion"]["weight"] < 1


def test_shipped_cnn_model_litert_matches_keras_on_real_clips(gtzan_dir):
    """The shipped export against its own Keras weights, on one real clip of every genre."""
    shipped = load_bundle(CNN_MODEL)
    x = np.concatenate([features.extract(audio.load(next((gtzan_dir / g).glob("*.opus")), FEATURES.sr), FEATURES)
                        for g in GENRES])
    assert len(x) >= 10 * len(GENRES) - 5  # ten 3-s segments per 30-s clip, a few silent ones aside
    litert = shipped.predictor(threads=1)(x)
    keras = KerasPredictor(export.keras_model(shipped), shipped)(x)
    assert float(np.abs(litert - keras).max()) <= TOLERANCE
    assert (litert.argmax(axis=1) == keras.argmax(axis=1)).all()


# --- fused bundles: the CNN plus the descriptor network, calibrated ---------------------------


def descriptor_net(n_columns: int):
    from genretag.training.networks import build_dense

    rng = np.random.default_rng(3)
    net = build_dense(n_columns, len(GENRES), (16, 8))
    net.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in net.get_weights()])
    return net


def descriptor_section(columns: list[str], params: dict, weight: float = 0.6) -> dict:
    rng = np.random.default_rng(5)
    return {"architecture": "dense", "layers": [16, 8], "features": params, "columns": columns,
            "normalisation": {"mean": rng.normal(size=len(columns)).tolist(),
                              "std": rng.uniform(1, 3, size=len(columns)).tolist()},
            "file": DESCRIPTOR_TFLITE, "fusion": {"rule": "log", "weight": weight}, "training": {}}


def test_a_fused_bundle_round_trips_its_descriptor_network_fusion_and_temperature(seed_net, bundle, tmp_path):
    expected = descriptors.expected()
    net = descriptor_net(len(expected["columns"]))
    cnn = export.exported(seed_net, dataclasses.replace(bundle, version="fused-1"))
    fused = export.with_descriptor(cnn, net, descriptor_section(expected["columns"], expected["features"]))
    path = fused.save(tmp_path / "fused.genretag")
    assert set(zipfile.ZipFile(path).namelist()) == {"meta.json", "model.tflite", "model.weights.h5",
                                                     DESCRIPTOR_TFLITE, DESCRIPTOR_WEIGHTS}
    meta = read_meta(path)
    assert meta["descriptor"]["fusion"] == {"rule": "log", "weight": 0.6} and meta["calibration"]["temperature"] == 1.3
    loaded = load_bundle(path)
    assert loaded.fusion() == Fusion("log", 0.6, 1.3) and loaded.descriptor == fused.descriptor
    norm = fused.descriptor["normalisation"]
    rows = np.asarray(norm["mean"]) + 3 * np.random.default_rng(4).normal(size=(5, len(norm["mean"])))
    keras = np.asarray(net(((rows - norm["mean"]) / np.asarray(norm["std"])).astype(np.float32), training=False))
    described = loaded.descriptor_predictor(threads=1)(rows)
    np.testing.assert_allclose(described, keras, rtol=0, atol=TOLERANCE)
    probs = loaded.fusion()(loaded.predictor(threads=1)(maps(5)), described)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert load_bundle(cnn.save(tmp_path / "plain.genretag")).fusion() == Fusion("log", 1.0, 1.3)


@pytest.mark.parametrize("change", ["columns", "features"])
def test_a_bundle_whose_descriptor_parameters_differ_is_refused(seed_net, bundle, tmp_path, change):
    expected = descriptors.expected()
    columns, params = list(expected["columns"]), dict(expected["features"])
    if change == "columns":
        columns[-1], columns[-2] = columns[-2], columns[-1]  # two columns swapped
    else:
        params["hop_length"] = 256
    cnn = export.exported(seed_net, bundle)
    fused = export.with_descriptor(cnn, descriptor_net(len(columns)), descriptor_section(columns, params))
    path = fused.save(tmp_path / f"other-{change}.genretag")
    with pytest.raises(BundleError, match=f"descriptor parameters differ.*{change}"):
        load_bundle(path)
