"""Build a fused, calibrated bundle: a CNN bundle plus the descriptor network, fusion and temperature chosen out of fold.

Everything that is chosen here is chosen on train+valid tracks that the model making each
prediction did not see: the CNN's cross-validation vote per track (its CV report's ``oof``) and
the descriptor network's (the chosen search trial's ``oof``). The descriptor network that ships is
then retrained on all train+valid rows of the table with the chosen settings. Test never enters.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genretag.bundle import GENRES, Bundle
from genretag.fusion import Fusion
from genretag.training import calibrate
from genretag.training.descriptors import DenseConfig, DescriptorTable, fit_dense, stat


@dataclasses.dataclass(frozen=True)
class OutOfFold:
    """Per-track out-of-fold probabilities of both networks on the tracks they share, and the truth."""

    track_ids: tuple[str, ...]
    y: np.ndarray
    cnn: np.ndarray
    descriptor: np.ndarray


def joined(cnn_oof: dict[str, Sequence[float]], descriptor_oof: dict[str, Sequence[float]],
           labels: Sequence[str] = GENRES) -> OutOfFold:
    """The tracks both reports hold (clip names like ``blues.00012``; the genre is the name's prefix)."""
    ids = tuple(sorted(set(cnn_oof) & set(descriptor_oof)))
    if not ids:
        raise ValueError("the CNN's and the descriptor network's out-of-fold reports share no track")
    index = {g: i for i, g in enumerate(labels)}
    return OutOfFold(ids, np.array([index[t.split(".")[0]] for t in ids]),
                     np.array([cnn_oof[t] for t in ids], np.float64),
                     np.array([descriptor_oof[t] for t in ids], np.float64))


def descriptor_held_out(table: DescriptorTable, folds: dict[str, int], config: DenseConfig,
                        left_out: frozenset[str] = frozenset(), blocks: dict[str, str] | None = None
                        ) -> dict[str, list[float]]:
    """The descriptor network's predictions for the CNN's held-out tracks, fold by fold, under the same terms.

    For fold ``k`` it trains on the table's rows except that fold's tracks and ``left_out`` (e.g. every
    row of the valid list when the CNN was trained on the train list only: the same artists stay out),
    and, for a CNN cross-validated by artist (``blocks``), every row of the fold's artist blocks: the
    table has rows of the blocks' other clips, whose audio is missing.
    """
    out: dict[str, list[float]] = {}
    blocks = blocks or {}
    for k in sorted(set(folds.values())):
        held = [t for t, f in folds.items() if f == k and t in set(table.track_ids)]
        held_blocks = {blocks[t] for t, f in folds.items() if f == k and t in blocks}
        train = [t for t in table.track_ids if folds.get(t) != k and t not in left_out
                 and blocks.get(t) not in held_blocks]
        net = fit_dense(table.rows(train), config.replace(seed=config.seed + k))
        out.update({t: p.tolist() for t, p in zip(held, net.predict(table.rows(held).x))})
    return out


def cv_table(oof: OutOfFold, folds: int = 5, seed: int = 0, labels: Sequence[str] = GENRES,
             blocks: dict[str, str] | None = None) -> dict[str, Any]:
    """CNN, descriptor network and fused model over the same stratified folds of the out-of-fold tracks
    (holding whole artist blocks out with ``blocks``).

    Each fold's fusion rule, weight and temperature are chosen on the other folds only, so the
    fused figures are not flattered by the choice. Mean and std over folds, per-genre recall too.
    """
    from genretag.training.splits import kfold_sides

    genres = [labels[i] for i in oof.y]
    rows: dict[str, list[dict[str, Any]]] = {"cnn": [], "descriptor": [], "fused": []}
    for sides in kfold_sides(oof.track_ids, genres, folds, seed, blocks):
        held = np.array([sides[t] == "valid" for t in oof.track_ids])
        fusion, _ = calibrate.choose_fusion(oof.cnn[~held], oof.descriptor[~held], oof.y[~held])
        y = oof.y[held]
        for name, probs in (("cnn", oof.cnn[held]), ("descriptor", oof.descriptor[held]),
                            ("fused", fusion(oof.cnn[held], oof.descriptor[held]))):
            rows[name].append({"track_accuracy": float(np.mean(probs.argmax(1) == y)),
                               "balanced_track_accuracy": calibrate.balanced_accuracy(probs, y),
                               "nll": calibrate.nll(probs, y),
                               "recall": {g: float(np.mean(probs.argmax(1)[y == i] == i))
                                          for i, g in enumerate(labels) if np.any(y == i)},
                               **({"fusion": fusion.to_dict()} if name == "fused" else {})})
    out: dict[str, Any] = {"tracks": len(oof.y), "folds": folds}
    for name, per_fold in rows.items():
        out[name] = {key: stat([f[key] for f in per_fold]) for key in ("track_accuracy", "balanced_track_accuracy", "nll")}
        out[name]["per_genre_recall"] = {g: stat([f["recall"][g] for f in per_fold if g in f["recall"]])
                                         for g in labels if any(g in f["recall"] for f in per_fold)}
        out[name]["per_fold"] = per_fold
    return out


def fused_bundle(cnn: Bundle, table: DescriptorTable, config: DenseConfig, fusion: Fusion,
                 evidence: dict[str, Any]) -> Bundle:
    """``cnn`` with the descriptor network (trained on all of ``table``, exported) and ``fusion``; a new version.

    ``fusion.weight == 1`` means the descriptor network does not help: the bundle keeps the CNN alone,
    calibrated.
    """
    from genretag.training import export

    digest = hashlib.sha1(f"{cnn.version}|{fusion.to_dict()}|{config.to_dict()}".encode()).hexdigest()[:7]
    calibrated = dataclasses.replace(cnn, calibration={"method": "temperature", "temperature": fusion.temperature},
                                     metrics={**cnn.metrics, "calibration": evidence})
    if fusion.weight >= 1.0:
        return dataclasses.replace(calibrated, version=f"{cnn.version}+cal-{digest}")
    net = fit_dense(table, config)
    return export.with_descriptor(dataclasses.replace(calibrated, version=f"{cnn.version}+dense-{digest}"), net.model,
                                  net.section(fusion.rule, fusion.weight))


def write_calibration(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``calibration.json`` and ``calibration.png`` (reliability diagram, precision-coverage curve)."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "calibration.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path, calibrate.reliability_png(report, out_dir / "calibration.png")
