"""The model bundle: round trip, refusal of mismatched feature parameters, the compiled predictor, the shipped model."""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np
import pytest

from genretag import descriptors
from genretag.config import PACKAGED_MODEL
from genretag.features import FEATURES, FeatureParams
from genretag.fusion import Fusion
from genretag.model import (
    DESCRIPTOR_WEIGHTS, GENRES, BundleError, DescriptorPart, ModelBundle, Predictor, build, build_dense, ensemble_of,
    load_bundle, members, read_meta,
)


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    model = build("seed", FEATURES.shape, len(GENRES))
    rng = np.random.default_rng(0)
    return ModelBundle(
        model=model,
        architecture="seed",
        version="test-1",
        mean=rng.normal(size=13).astype(np.float32),
        std=rng.uniform(1, 2, size=13).astype(np.float32),
        training={"tracks": 3},
        metrics={"balanced_track_accuracy": 0.5},
    )


def maps(n: int) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, *FEATURES.shape)).astype(np.float32) * 50


def test_round_trip_keeps_weights_and_metadata(bundle, tmp_path):
    path = bundle.save(tmp_path / "m.genretag")
    loaded = load_bundle(path)
    assert loaded.version == "test-1" and loaded.labels == GENRES and loaded.architecture == "seed"
    assert loaded.features == FEATURES
    np.testing.assert_array_equal(loaded.mean, bundle.mean)
    np.testing.assert_array_equal(loaded.std, bundle.std)
    assert loaded.training == {"tracks": 3} and loaded.metrics == {"balanced_track_accuracy": 0.5}
    np.testing.assert_allclose(Predictor(loaded)(maps(4)), Predictor(bundle)(maps(4)), rtol=1e-5, atol=1e-6)
    assert set(zipfile.ZipFile(path).namelist()) == {"meta.json", "model.weights.h5"}


def test_mismatched_feature_parameters_are_refused(bundle, tmp_path):
    other = dataclasses.replace(bundle, features=FeatureParams(hop_length=256))
    path = other.save(tmp_path / "other.genretag")
    with pytest.raises(BundleError, match="hop_length"):
        load_bundle(path)


def test_not_a_bundle_is_refused(tmp_path):
    path = tmp_path / "junk.genretag"
    path.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="not a genretag model bundle"):
        read_meta(path)


def test_predictor_matches_keras_predict_and_normalises(bundle):
    x = maps(25)
    ours = Predictor(bundle, batch_size=8)(x)
    reference = bundle.model.predict(bundle.normalise(x), verbose=0)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, rtol=1e-5)
    assert Predictor(bundle)(maps(0)).shape == (0, len(GENRES))


def test_an_ensemble_averages_its_members_and_round_trips(bundle, tmp_path):
    seed, gap = build("seed", FEATURES.shape, len(GENRES)), build("gap", FEATURES.shape, len(GENRES))
    gap.set_weights([w + np.random.default_rng(2).normal(0, 0.05, w.shape).astype(w.dtype) for w in gap.get_weights()])
    joined = dataclasses.replace(bundle, model=ensemble_of([seed, gap], "seed+gap", FEATURES.shape, len(GENRES)),
                                 architecture="seed+gap", version="ens-1")
    x = maps(6)
    want = (seed.predict(bundle.normalise(x), verbose=0) + gap.predict(bundle.normalise(x), verbose=0)) / 2
    np.testing.assert_allclose(Predictor(joined)(x), want, rtol=1e-4, atol=1e-5)
    loaded = load_bundle(joined.save(tmp_path / "ens.genretag"))
    assert loaded.architecture == "seed+gap" and members(loaded.architecture) == ["seed", "gap"]
    np.testing.assert_allclose(Predictor(loaded)(x), want, rtol=1e-4, atol=1e-5)


def test_unknown_architectures_are_refused():
    with pytest.raises(BundleError, match="unknown architecture 'resnet'"):
        members("seed+resnet")


def test_shipped_model_is_complete_and_small():
    meta = read_meta(PACKAGED_MODEL)
    assert meta["labels"] == list(GENRES)
    assert meta["features"] == FEATURES.to_dict()
    assert len(meta["normalisation"]["mean"]) == FEATURES.n_mfcc
    assert PACKAGED_MODEL.stat().st_size < 3 * 1024 * 1024
    load_bundle(PACKAGED_MODEL)


# --- fused bundles: the CNN plus the descriptor network, calibrated ---------------------------


def descriptor_part(columns: tuple[str, ...], features: dict) -> DescriptorPart:
    rng = np.random.default_rng(3)
    net = build_dense(len(columns), len(GENRES), (16, 8))
    net.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in net.get_weights()])
    return DescriptorPart(net, (16, 8), columns, features, rng.normal(size=len(columns)),
                          rng.uniform(1, 3, size=len(columns)), rule="log", weight=0.6)


def test_a_fused_bundle_round_trips_its_descriptor_network_fusion_and_temperature(bundle, tmp_path):
    expected = descriptors.expected()
    part = descriptor_part(tuple(expected["columns"]), expected["features"])
    fused = dataclasses.replace(bundle, descriptor=part, temperature=1.7, version="fused-1")
    path = fused.save(tmp_path / "fused.genretag")
    assert {"meta.json", "model.weights.h5", DESCRIPTOR_WEIGHTS} <= set(zipfile.ZipFile(path).namelist())
    meta = read_meta(path)
    assert meta["calibration"] == {"method": "temperature", "temperature": 1.7}
    assert meta["descriptor"]["fusion"] == {"rule": "log", "weight": 0.6}
    loaded = load_bundle(path)
    assert loaded.fusion() == Fusion("log", 0.6, 1.7) and loaded.descriptor.columns == part.columns
    rows = np.random.default_rng(4).normal(size=(5, len(part.columns))) * 3
    np.testing.assert_allclose(loaded.descriptor.predict(rows), part.predict(rows), rtol=1e-5, atol=1e-6)
    cnn = Predictor(loaded)(maps(5))
    fused_probs = loaded.fusion()(cnn, loaded.descriptor.predict(rows))
    np.testing.assert_allclose(fused_probs, fused.fusion()(Predictor(fused)(maps(5)), part.predict(rows)), atol=1e-5)
    np.testing.assert_allclose(fused_probs.sum(axis=1), 1.0)
    plain = load_bundle(bundle.save(tmp_path / "plain.genretag"))
    assert plain.descriptor is None and plain.fusion() == Fusion("log", 1.0, 1.0)


@pytest.mark.parametrize("change", ["columns", "features"])
def test_a_bundle_whose_descriptor_parameters_differ_is_refused(bundle, tmp_path, change):
    expected = descriptors.expected()
    columns, features = tuple(expected["columns"]), dict(expected["features"])
    if change == "columns":
        columns = columns[:-2] + (columns[-1], columns[-2])  # two columns swapped
    else:
        features["hop_length"] = 256
    fused = dataclasses.replace(bundle, descriptor=descriptor_part(columns, features), temperature=1.2)
    path = fused.save(tmp_path / f"other-{change}.genretag")
    with pytest.raises(BundleError, match=f"descriptor parameters differ.*{change}"):
        load_bundle(path)
