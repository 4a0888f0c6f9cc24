"""The ``genretag`` command group: every command is a thin view onto the package's functions.

Heavy imports (librosa, LiteRT, SQLAlchemy; TensorFlow for `train` only) happen inside the commands,
so ``--help`` is fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from genretag.config import Settings, get_settings

if TYPE_CHECKING:
    from genretag.db.queries import LibraryLabels
    from genretag.genremap import GenreMap


class _Commands(click.Group):
    """The command group; a database error ends any command with one line naming the URL, password hidden."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] != "sqlalchemy" or not isinstance(ctx.obj, Settings):
                raise
            from genretag.config import redact_url

            reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
            raise click.ClickException(f"database {redact_url(ctx.obj.database_url)}: {reason}") from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), help="Model bundle: a file, or a shipped one by name, 'default' (musicnn + GTZAN head, calibrated) or 'cnn' (the MFCC CNN, fused with the descriptor network) [GENRETAG_MODEL_PATH].")
@click.option("--database-url", help="SQLAlchemy URL [GENRETAG_DATABASE_URL]; default: SQLite in the user data dir.")
@click.option("--broker-url", help="Celery broker URL [GENRETAG_BROKER_URL]; empty: embedded local mode.")
@click.option("--segments", type=click.Choice(["spread", "all"]), help="Vote over staged windows spread over long tracks, or every segment [GENRETAG_SEGMENTS].")
@click.option("--windows", type=click.IntRange(1), help="K, at most this many windows vote on a long track [GENRETAG_WINDOWS].")
@click.option("--first-windows", type=click.IntRange(1), help="Windows of a staged vote's first stage [GENRETAG_FIRST_WINDOWS].")
@click.option("--vote-z", type=click.FloatRange(0), help="Stop a staged vote once the leader is this many standard errors ahead; a large value uses all K windows [GENRETAG_VOTE_Z].")
@click.option("--workers", type=click.IntRange(0), help="Processes for decoding / Celery concurrency; 0 = cores [GENRETAG_WORKERS].")
@click.pass_context
def cli(ctx: click.Context, **overrides: object) -> None:
    """Tag the genre of every track in a music collection."""
    ctx.obj = get_settings().replace(**overrides)


def settings_of(ctx: click.Context) -> Settings:
    return ctx.find_root().obj


class _ScanProgress:
    """A one-line live counter on stderr (only when it is a terminal), at most five updates a second."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.shown = 0.0

    def __call__(self, counts) -> None:
        import time

        if self.live and time.monotonic() - self.shown > 0.2:
            self.shown = time.monotonic()
            click.echo(f"\rfound {counts.found}  queued {counts.queued}  done {counts.done}  failed {counts.failed} ",
                       nl=False, err=True)

    def close(self) -> None:
        if self.live:
            click.echo("", err=True)


@cli.command()
@click.argument("roots", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Count what a scan would do; change nothing.")
@click.option("--force", is_flag=True, help="Classify every file again, changed or not.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="With a broker: wait for the workers to finish.")
@click.option("--follow-symlinks/--no-follow-symlinks", default=None, help="Enter symlinked folders [GENRETAG_FOLLOW_SYMLINKS].")
@click.pass_context
def scan(ctx: click.Context, roots: tuple[Path, ...], dry_run: bool, force: bool, wait: bool,
         follow_symlinks: bool | None) -> None:
    """Tag every new or changed track under each ROOT [default: GENRETAG_LIBRARY_ROOTS].

    Without a broker, classifies in this process; with one, queues for `genretag worker`s.
    """
    from genretag.config import redact_url
    from genretag.db import session_scope, store
    from genretag.producer import ScanRefused
    from genretag.producer import scan as run_scan
    from genretag.producer.enqueue import ScanStalled

    settings = settings_of(ctx).replace(follow_symlinks=follow_symlinks)
    roots = roots or tuple(Path(r) for r in settings.library_roots)
    if not roots:
        raise click.UsageError("give a ROOT folder to scan, or set GENRETAG_LIBRARY_ROOTS")
    where = "local mode" if settings.local_mode else f"queue {settings.task_queue} on {redact_url(settings.broker_url)}"
    for root in roots:
        click.echo(f"scanning {root} ({where}; database {redact_url(settings.database_url)})", err=True)
        progress = _ScanProgress()
        try:
            summary = run_scan(root, settings, dry_run=dry_run, force=force, wait=wait, progress=progress)
        except (ScanRefused, ScanStalled) as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            progress.close()
        c = summary.counts
        verb = "would queue" if dry_run else "queued"
        click.echo(f"{summary.root}: found {c.found} ({c.new} new, {c.changed} changed, {c.unchanged} unchanged), "
                   f"{c.missing} missing; {verb} {c.queued}" + ("" if dry_run else f": {c.done} done, {c.failed} failed"))
        if summary.scan_id is not None and c.failed:
            with session_scope(settings.database_url) as session:
                for path, reason in store.scan_failures(session, summary.scan_id, limit=10):
                    click.echo(f"  failed: {path}: {reason}", err=True)


@cli.command()
@click.option("--loglevel", default="info", show_default=True, help="Celery log level.")
@click.pass_context
def worker(ctx: click.Context, loglevel: str) -> None:
    """Run a Celery worker (concurrency = --workers) that classifies queued tracks."""
    from genretag.config import redact_url
    from genretag.worker.app import start_worker

    settings = settings_of(ctx)
    if settings.local_mode:
        raise click.UsageError("a worker needs a broker: set GENRETAG_BROKER_URL or --broker-url "
                               "(without one, `genretag scan` classifies in-process)")
    click.echo(f"worker: {settings.worker_count} processes x {settings.threads_per_worker} inference threads, "
               f"queue {settings.task_queue} on {redact_url(settings.broker_url)}", err=True)
    ctx.exit(start_worker(settings, concurrency=settings.worker_count, pool_cls="prefork",
                          queues=[settings.task_queue], loglevel=loglevel))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.pass_context
def classify(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Print the genre of each FILE, its confidence, the top 3 and the segment votes.

    A call below GENRETAG_MIN_CONFIDENCE reads ``uncertain: jazz`` (``or classical`` when the
    runner-up is close); the JSON carries ``uncertain``, ``runner_up`` and the calibrated probabilities.
    """
    from genretag.audio import AudioError
    from genretag.bundle import BundleError
    from genretag.classify import Classifier

    settings = settings_of(ctx)
    try:
        classifier = Classifier.load(settings, threads=settings.threads_alone)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    failed = 0
    for path in files:
        try:
            result = classifier.classify(path)
        except AudioError as exc:
            failed += 1
            if as_json:
                click.echo(json.dumps({"path": str(path), "error": exc.reason}))
            else:
                click.echo(f"{path}: error: {exc.reason}", err=True)
            continue
        if as_json:
            click.echo(json.dumps(result.to_dict()))
            continue
        top = ", ".join(f"{g} {p:.2f}" for g, p in result.top(3))
        votes = " ".join(f"{g}:{n}" for g, n in result.votes.items() if n)
        click.echo(
            f"{path}: {result.label()} (confidence {result.confidence:.2f}, votes {result.vote_share:.0%})\n"
            f"  top 3: {top}\n"
            f"  votes over {result.segments_used} {result.segment_mode} segments: {votes}"
        )
    sys.exit(1 if failed else 0)


def require_tensorflow() -> None:
    """Stop with one line saying how to get TensorFlow, which only training needs."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise click.ClickException("training needs TensorFlow, which is not installed: "
                                   "pip install 'genretag[train]'") from None


def _tag_map(settings: Settings) -> GenreMap:
    """The mapping table of genre tags (default, plus ``GENRETAG_TAG_MAP``); a bad user file is a usage error."""
    from genretag.genremap import GenreMapError, load_map

    try:
        return load_map(settings.tag_map)
    except GenreMapError as exc:
        raise click.ClickException(str(exc)) from None


def _training_data(data: Path, splits: Path | None, settings: Settings, excerpts: bool = True):
    """Discover a GTZAN folder and load the MFCC maps of its clips (cached), with a progress bar."""
    from genretag.training.datasets import discover, load_features

    dataset = discover(data, splits)
    clips = dataset.clips + (dataset.excerpts if excerpts else ())
    with click.progressbar(clips, label=f"MFCC of {len(clips)} clips ({dataset.layout} layout)", file=sys.stderr) as bar:
        loaded = load_features(bar, settings.cache_dir)
    return dataset, [t for t in loaded if not t.clip.excerpt], [t for t in loaded if t.clip.excerpt]


def training_source(from_library_help: str) -> Callable[[Callable], Callable]:
    """The options that choose the training data, GTZAN (--data) or the library's tags: shared by train and explore."""
    options = [
        click.argument("roots", nargs=-1, type=click.Path(file_okay=False)),
        click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), help="GTZAN folder (any layout)."),
        click.option("--from-library", is_flag=True, help=from_library_help),
        click.option("--mapped", is_flag=True, help="With --from-library: labels are the 10 genres the tags map to, not the tags themselves."),
        click.option("--min-tracks", type=click.IntRange(1), default=5, show_default=True, help="With --from-library: a label needs this many tracks."),
        click.option("--valid-fraction", type=click.FloatRange(0, 0.9), default=0.2, show_default=True, help="With --from-library: share of each label's tracks held out, as whole artists (else albums)."),
    ]

    def apply(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@cli.command()
@training_source("Train on the library's own genre tags (tracks under ROOT..., or all) instead of GTZAN.")
@click.option("--arch", default="seed", show_default=True, help="Architecture (genretag.training.networks.ARCHITECTURES), or several joined by '+' for an ensemble averaging their probabilities (e.g. seed+gap).")
@click.option("--recipe", "recipe_name", type=click.Choice(["seed", "ours"]), default="seed", show_default=True, help="Training settings to start from (genretag.training.train.RECIPES); options below override them.")
@click.option("--folds", type=click.IntRange(2), help="Cross-validate with K folds (test split untouched); saves no model.")
@click.option("--folds-by", type=click.Choice(["artist", "track"]), default="artist", show_default=True, help="CV folds hold out whole artist blocks of the fault-filtered lists (runs of one genre's clips on one list; by track without the lists), or single tracks (artists then shared across folds: optimistic). Also the CV that calibrates --arch musicnn.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Bundle to write [default: genretag-ARCH.genretag].")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="With --folds: write the CV summary JSON here.")
@click.option("--epochs", type=click.IntRange(1), help="Maximum epochs (exact epochs with --no-early-stopping).")
@click.option("--patience", type=click.IntRange(1), help="Early-stopping patience in epochs.")
@click.option("--batch-size", type=click.IntRange(1))
@click.option("--learning-rate", type=float)
@click.option("--balance", type=click.Choice(["weights", "sampling", "sqrt"]), help="Class weights, class-balanced batches, or batches balanced halfway (square root).")
@click.option("--mixup", type=float, help="Mixup Beta alpha; 0 disables.")
@click.option("--label-smoothing", type=float)
@click.option("--cosine/--no-cosine", default=None, help="Cosine learning-rate decay over --epochs.")
@click.option("--augment/--no-augment", default=None, help="Roll, masks and noise on training segments.")
@click.option("--shifted/--no-shifted", default=None, help="Also train on segments cut half a segment later (twice the real audio views).")
@click.option("--excerpts/--no-excerpts", default=None, help="Use excerpts/ as extra training material [default: yes].")
@click.option("--early-stopping/--no-early-stopping", default=None, help="Stop on validation tracks, or train on train+valid tracks (all fold tracks in CV) for exactly --epochs; never test. With --arch musicnn: --early-stopping trains (and calibrates) the head on the train list only.")
@click.option("--splits", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of {train,valid,test}_filtered.txt [default: DATA/splits].")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--head-c", type=click.FloatRange(0, min_open=True), help="musicnn: the head's C (inverse L2) [default: the best on CV, genretag.training.pretrained.HEAD_C].")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True, help="TensorFlow threads.")
@click.option("--trials", type=click.IntRange(1), default=16, show_default=True, help="With --arch dense: settings tried by the random search (the seed's first).")
@click.pass_context
def train(ctx: click.Context, roots: tuple[str, ...], data: Path | None, from_library: bool, mapped: bool,
          min_tracks: int, valid_fraction: float, arch: str, recipe_name: str, folds: int | None, out: Path | None,
          report: Path | None, splits: Path | None, trials: int, head_c: float | None, folds_by: str,
          **overrides: object) -> None:
    """Train a model on GTZAN (split by track), or cross-validate one with --folds.

    With --from-library, train on the genre tags of the library's tracks under ROOT... instead.
    ``--arch dense`` is the descriptor network: a random search over its settings, cross-validated
    (--folds-by) on the descriptor table's train+valid rows (`genretag fuse` puts the chosen one in a bundle).
    ``--arch musicnn`` trains the pretrained family: a head on musicnn's frozen MSD backbone
    (--folds: its C on CV; otherwise the head at --head-c, calibrated on CV's out-of-fold tracks).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    require_tensorflow()
    from genretag.bundle import BundleError
    from genretag.training import export
    from genretag.training.networks import members
    from genretag.training.train import cross_validate, recipe, train_model

    if arch == "dense":
        if data is None:
            raise click.UsageError("--arch dense trains on the descriptor table beside --data GTZAN_FOLDER")
        return _search_dense(data, splits, folds or 5, trials, report, overrides["seed"] or 0, overrides["threads"],
                             folds_by)
    try:
        members(arch)
    except BundleError as exc:
        raise click.BadParameter(str(exc), param_hint="--arch") from None
    config = recipe(recipe_name, arch).replace(**overrides)
    if from_library:
        if data or folds:
            raise click.UsageError("--from-library trains on the library's tags: no --data, no --folds")
        _train_from_library(settings_of(ctx), roots, mapped, min_tracks, valid_fraction, config, out)
        return
    if data is None or roots:
        raise click.UsageError("give --data GTZAN_FOLDER, or --from-library [ROOT...]")
    if arch == "musicnn":
        return _train_pretrained(data, splits, settings_of(ctx), folds, out, report, head_c, config.threads,
                                 overrides["early_stopping"] is True, folds_by)
    dataset, tracks, excerpts = _training_data(data, splits, settings_of(ctx), config.excerpts)
    verbose = 1 if sys.stdout.isatty() else 2
    if folds:
        summary = cross_validate(dataset, tracks, excerpts, config, folds, verbose, echo=click.echo, folds_by=folds_by)
        bal = summary["balanced_track_accuracy"]
        click.echo(f"{folds}-fold CV, {arch}: balanced track accuracy {bal['mean']:.3f} +- {bal['std']:.3f}, "
                   f"track accuracy {summary['track_accuracy']['mean']:.3f} +- {summary['track_accuracy']['std']:.3f}")
        for genre, r in summary["per_genre_recall"].items():
            click.echo(f"  {genre:<10} recall {r['mean']:.3f} +- {r['std']:.3f}")
        shifted = summary["with_shifted_segments"]["balanced_track_accuracy"]
        click.echo(f"  with the shifted segments voting too: balanced track accuracy "
                   f"{shifted['mean']:.3f} +- {shifted['std']:.3f}")
        for member in summary["members"]:
            alone = member["balanced_track_accuracy"]
            click.echo(f"  member {member['architecture']} alone: balanced track accuracy "
                       f"{alone['mean']:.3f} +- {alone['std']:.3f}")
        if report:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(summary, indent=2) + "\n")
        return
    result = train_model(dataset, tracks, excerpts, config, verbose)
    path = export.save(result.model, result.bundle, out or Path(f"genretag-{arch}.genretag"))
    click.echo(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB), version {result.bundle.version}, "
               f"{result.epochs_run} epochs (best {result.best_epoch})")


def _search_dense(data: Path, splits: Path | None, folds: int, trials: int, report: Path | None, seed: int,
                  threads: int, folds_by: str) -> None:
    """The descriptor network's random search, printed as a table and written to ``report``."""
    from genretag.training.descriptors import TableError, search, split_tables
    from genretag.training.networks import configure_tensorflow
    from genretag.training.splits import artist_blocks

    configure_tensorflow(threads)
    try:
        rows, _, sides, how = split_tables(data, splits)
    except TableError as exc:
        raise click.ClickException(str(exc)) from None
    blocks = artist_blocks(sides) if folds_by == "artist" else None
    click.echo(f"descriptor network: {len(rows.track_ids)} train+valid rows ({how}), {folds}-fold CV by {folds_by}",
               err=True)
    def keep(summary: dict) -> None:
        if report:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(summary, indent=1) + "\n")

    result = search(rows, trials, folds, seed, echo=lambda line: click.echo(line, err=True), progress=keep,
                    blocks=blocks)
    best = result["trials"][result["best"]]
    click.echo(f"best: {best['config']}: balanced track accuracy {best['balanced_track_accuracy']['mean']:.3f} +- "
               f"{best['balanced_track_accuracy']['std']:.3f}, track accuracy {best['track_accuracy']['mean']:.3f}")


@cli.command()
@click.argument("cnn_model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="GTZAN folder holding features/features_30_sec.csv and splits/.")
@click.option("--cnn-cv", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The CNN's held-out track votes: a CV report (genretag train --folds ... --report) or an evaluation.json of a held-out split.")
@click.option("--search", "search_report", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The descriptor network's search report (genretag train --arch dense --report).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Fused bundle to write.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), help="Write calibration.json (with the CV table) and calibration.png here.")
@click.option("--splits", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of {train,valid,test}_filtered.txt [default: DATA/splits].")
@click.option("--held-out-side", type=click.Choice(["train", "valid"]), help="The CNN report holds a whole list side held out (evaluate on a model trained without it): the descriptor network's held-out predictions leave that side out too.")
@click.option("--always-fuse", is_flag=True, help="Keep the descriptor network even when the fused model is not better (to evaluate it side by side).")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True, help="TensorFlow threads.")
def fuse(cnn_model: Path, data: Path, cnn_cv: Path, search_report: Path, out: Path, report_dir: Path | None,
         splits: Path | None, held_out_side: str | None, always_fuse: bool, threads: int) -> None:
    """Add the descriptor network to CNN_MODEL, with the fusion rule, weight and temperature chosen out of fold.

    The choice uses only train+valid tracks, each predicted by models that did not train on it; the
    descriptor network is then trained on all train+valid rows of the table with the search's best settings.
    Unless the fused model beats the CNN alone there in both track and balanced accuracy (folds
    whose fusion is chosen on the other folds), the bundle keeps the CNN alone, calibrated.
    """
    require_tensorflow()
    import numpy as np

    from genretag.bundle import load_bundle
    from genretag.fusion import Fusion
    from genretag.training.networks import configure_tensorflow
    from genretag.training.calibrate import WEIGHTS, calibration_report
    from genretag.training.descriptors import DenseConfig, TableError, split_tables
    from genretag.training.fuse import cv_table, descriptor_held_out, fused_bundle, joined, write_calibration
    from genretag.training.splits import artist_blocks

    configure_tensorflow(threads)
    try:
        rows, test_rows, sides, how = split_tables(data, splits)
    except TableError as exc:
        raise click.ClickException(str(exc)) from None
    found = json.loads(search_report.read_text())
    best = found["trials"][found["best"]]
    cnn = load_bundle(cnn_model)
    if cnn.descriptor is not None:
        raise click.ClickException(f"{cnn_model} already holds a descriptor network ({cnn.version}): "
                                   "fuse the bundle of its network alone")
    cnn_report = json.loads(cnn_cv.read_text())
    held_out = cnn_report.get("out_of_fold")
    if held_out is None or tuple(held_out["labels"]) != cnn.labels:
        raise click.ClickException(f"{cnn_cv}: no out-of-fold track probabilities of this model's labels; "
                                   "rerun the CV with this code")
    folds = {r["track_id"]: r["fold"] for r in held_out["tracks"]}
    on_test = sorted(t for t in folds if t in set(test_rows.track_ids))
    if on_test:
        raise click.ClickException(f"{cnn_cv}: holds test tracks ({', '.join(on_test[:3])}, ...): "
                                   "the test split chooses nothing")
    left_out = frozenset(t for t, side in sides.items() if side == held_out_side) if held_out_side else frozenset()
    blocks = artist_blocks(sides) if cnn_report.get("folds_by") == "artist" else None
    config = DenseConfig(**{**best["config"], "layers": tuple(best["config"]["layers"])})
    descriptor = descriptor_held_out(rows, folds, config, left_out, blocks)
    oof = joined({r["track_id"]: r["probabilities"] for r in held_out["tracks"]}, descriptor)
    table = cv_table(oof, blocks=blocks)
    helps = all(table["fused"][k]["mean"] > table["cnn"][k]["mean"] for k in ("track_accuracy", "balanced_track_accuracy"))
    if not helps and always_fuse:
        click.echo("the fused model is not better than the CNN alone on held-out tracks; fused anyway (--always-fuse)")
        helps = True
    elif not helps:
        click.echo("the fused model is not better than the CNN alone on held-out tracks (track and balanced "
                   "accuracy): the bundle keeps the CNN alone, calibrated")
    report = calibration_report(oof.cnn, oof.descriptor, oof.y, cnn.labels, WEIGHTS if helps else (1.0,),
                                np.array([folds[t] for t in oof.track_ids]) if blocks else None)
    fusion = report["fusion"]
    chosen = Fusion(**fusion)
    evidence = {"out_of_fold_tracks": len(oof.y), "fusion": fusion, "cnn_cv": str(cnn_cv), "split": how,
                "folds_by": cnn_report.get("folds_by", "track"),
                "fused": report["fused"], "threshold": report["threshold"],
                "cv": {k: {m: table[k][m] for m in ("track_accuracy", "balanced_track_accuracy", "nll")}
                       for k in ("cnn", "descriptor", "fused")}}
    bundle = fused_bundle(cnn, rows, config, chosen, evidence)
    path = bundle.save(out)
    click.echo(f"fusion {chosen.rule}, CNN weight {chosen.weight:.2f}, temperature {chosen.temperature:.3f} "
               f"(chosen on {len(oof.y)} out-of-fold tracks)")
    for name in ("cnn", "descriptor", "fused"):
        t = table[name]
        click.echo(f"  {table['folds']}-fold CV {name:<10}: balanced track accuracy {t['balanced_track_accuracy']['mean']:.3f} "
                   f"+- {t['balanced_track_accuracy']['std']:.3f}, track accuracy {t['track_accuracy']['mean']:.3f} "
                   f"+- {t['track_accuracy']['std']:.3f}, NLL {t['nll']['mean']:.3f}")
    f = report["fused"]
    click.echo(f"  calibration: NLL {f['before']['nll']:.3f} -> {f['after']['nll']:.3f}, ECE {f['before']['ece']:.3f} -> "
               f"{f['after']['ece']:.3f} (temperature fitted on other folds: ECE {f['after_cross_fitted']['ece']:.3f}; a "
               f"calibrated model would show {f['after_cross_fitted']['ece_if_calibrated']['median']:.3f} on as many tracks)")
    d = report["threshold"]
    click.echo(f"  GENRETAG_MIN_CONFIDENCE {d['threshold']:.2f}: precision {d['precision']:.3f}, coverage {d['coverage']:.3f}")
    click.echo(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB), version {bundle.version}")
    if report_dir:
        written = write_calibration({**report, "cv": table}, report_dir)
        click.echo(f"wrote {written[0]} and {written[1]}")

def _train_pretrained(data: Path, splits: Path | None, settings: Settings, folds: int | None, out: Path | None,
                      report: Path | None, head_c: float | None, threads: int, train_only: bool, folds_by: str) -> None:
    """``train --arch musicnn``: backbone features of every clip (cached), then CV of the head or the bundle.

    ``train_only`` (``--early-stopping``) keeps the whole valid side out, CV and head alike, so that
    ``evaluate --split valid`` scores the head on artists it never heard (and ``fuse --held-out-side valid``
    can choose on them).
    """
    from genretag.training import export, pretrained
    from genretag.training.datasets import discover
    from genretag.training.networks import configure_tensorflow
    from genretag.training.splits import dataset_sides

    configure_tensorflow(threads)
    dataset = discover(data, splits)
    clips = dataset.clips + dataset.excerpts
    if train_only:
        sides, _ = dataset_sides(dataset)
        clips = [c for c in clips if sides.get(c.track_id) == "train"]
    with click.progressbar(clips, label=f"musicnn features of {len(clips)} clips", file=sys.stderr) as bar:
        loaded = pretrained.backbone_features(bar, settings.cache_dir)
    tracks, excerpts = [t for t in loaded if not t.clip.excerpt], [t for t in loaded if t.clip.excerpt]
    if folds:
        summary = pretrained.cross_validate_grid(dataset, tracks, excerpts, folds, echo=click.echo, folds_by=folds_by)
        click.echo(f"best C {summary['best_C']:g}")
    else:
        trained = pretrained.train(dataset, tracks, excerpts, head_c or pretrained.HEAD_C, echo=click.echo,
                                   folds_by=folds_by)
        summary = trained.cv
        bundle = pretrained.bundle_of(trained)
        path = export.save(trained.model, bundle, out or Path("genretag-musicnn.genretag"))
        click.echo(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB), version {bundle.version}")
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(summary, indent=2) + "\n")


def _library_rows(settings: Settings, roots: tuple[str, ...], mapped: bool, min_tracks: int) -> LibraryLabels:
    """The library's labelled tracks under ``roots`` (a session opened and closed here): plain rows."""
    from genretag.db import session_factory
    from genretag.db.queries import library_labels

    genre_map = _tag_map(settings) if mapped else None
    with session_factory(settings.database_url)() as session:
        return library_labels(session, [os.path.realpath(r) for r in roots], min_tracks, genre_map)


def _train_from_library(settings: Settings, roots: tuple[str, ...], mapped: bool, min_tracks: int,
                        valid_fraction: float, config, out: Path | None) -> None:
    """Labels from the database (:func:`_library_rows`), then training on plain rows."""
    from genretag.training.library import LibraryTrainingError, load_library, train_library

    found = _library_rows(settings, roots, mapped, min_tracks)
    counts: dict[str, int] = {}
    for row in found.rows:
        counts[row.label] = counts.get(row.label, 0) + 1
    click.echo(f"{len(found.rows)} tagged tracks, {len(counts)} labels: "
               + ", ".join(f"{label} {n}" for label, n in sorted(counts.items())), err=True)
    if found.dropped:
        click.echo(f"  left out (under {min_tracks} tracks, or unmapped): "
                   + ", ".join(f"{label} {n}" for label, n in found.dropped.items()), err=True)
    with click.progressbar(found.rows, label=f"MFCC of {len(found.rows)} tracks", file=sys.stderr) as bar:
        tracks = load_library(list(bar), settings.cache_dir)
    try:
        trained = train_library(found.rows, tracks, config, valid_fraction, 1 if sys.stdout.isatty() else 2)
    except LibraryTrainingError as exc:
        raise click.ClickException(str(exc)) from None
    bundle = trained.result.bundle
    v = trained.validation
    if v:
        from genretag.training.evaluate import table

        click.echo(f"held-out artists/albums: {trained.sides['valid']} tracks (trained on {trained.sides['train']})\n"
                   f"{table(v)}")
    else:
        click.echo("no held-out group (too few artists or albums per label): no validation figures")
    from genretag.training import export

    path = export.save(trained.result.model, bundle, out or Path(f"genretag-library-{config.architecture}.genretag"))
    click.echo(f"saved {path}, version {bundle.version}, labels {', '.join(trained.labels)}")


@cli.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="GTZAN folder (any layout).")
@click.option("--split", type=click.Choice(["test", "valid", "all"]), default="test", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for evaluation.json and confusion.png.")
@click.option("--splits", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of {train,valid,test}_filtered.txt [default: DATA/splits].")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True, help="Inference threads.")
def evaluate(model: Path, data: Path, split: str, out: Path | None, splits: Path | None, threads: int) -> None:
    """Evaluate MODEL on whole GTZAN tracks (all segments, track vote): accuracy, per genre, confusion.

    Runs the bundle's LiteRT export, as classification does, so the figures are those of what ships.
    """
    from genretag.bundle import BundleError, load_bundle
    from genretag.training.datasets import discover, load_features
    from genretag.training.evaluate import held_out_votes, predict_tracks, select_tracks, table, track_metrics, write_report
    from genretag.training.splits import dataset_sides

    try:
        bundle = load_bundle(model)
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    dataset = discover(data, splits)
    sides, how = dataset_sides(dataset)
    clips = [c for c in dataset.clips if split == "all" or sides.get(c.track_id) == split]
    with click.progressbar(clips, label=f"{bundle.features.kind} features of {len(clips)} {split} clips", file=sys.stderr) as bar:
        loaded = load_features(bar, settings_of(click.get_current_context()).cache_dir, bundle.features)
        tracks = select_tracks(loaded, sides, split)
    if not tracks:
        raise click.ClickException(f"no {split} tracks found under {data}")
    segment_probs = predict_tracks(bundle.predictor(threads), tracks)
    metrics = track_metrics(tracks, segment_probs, bundle.labels)
    metrics = {"model": str(model), "model_version": bundle.version, "data": str(dataset.root),
               "layout": dataset.layout, "split": split, "split_source": how, **metrics,
               "out_of_fold": held_out_votes(tracks, segment_probs, bundle.labels, f"held-out split {split!r} ({how})")}
    click.echo(f"{bundle.version} on the {split} split of {dataset.root}\nCNN alone, every segment voting:\n{table(metrics)}")
    if out:
        report, png = write_report(metrics, out, f"{bundle.version}: {split} tracks of {dataset.root.name}")
        click.echo(f"wrote {report} and {png}")
    if bundle.descriptor is not None or bundle.calibration is not None:
        _evaluate_fused(bundle, tracks, segment_probs, data, splits, split, out, threads)


def _evaluate_fused(bundle, tracks, segment_probs, data: Path, splits: Path | None, split: str, out: Path | None,
                    threads: int) -> None:
    """The descriptor network on every table row of the split, then CNN, descriptor and fused side by side from audio;
    calibration and the precision-coverage curve of the bundle's track probabilities."""
    from genretag.training.calibrate import reliability_png
    from genretag.training.descriptors import TableError, split_tables
    from genretag.training.evaluate import CALIBRATION_PNG, FUSED_NAME, descriptor_rows, fused_report, fused_table, table_report

    settings = settings_of(click.get_current_context())
    describe = bundle.descriptor_predictor(threads) if bundle.descriptor is not None else None
    rows, rows_of_split = None, None  # the table's rows are scored for the test split only (its 290 tracks)
    if describe is not None and split == "test":
        try:
            rows_of_split = split_tables(data, splits)[1]
        except TableError as exc:
            click.echo(f"no descriptor table: {exc}", err=True)
    if describe is not None:
        with click.progressbar(tracks, label=f"descriptors of {len(tracks)} {split} clips", file=sys.stderr) as bar:
            rows = descriptor_rows(list(bar))
    report = fused_report(bundle, describe, tracks, segment_probs, rows, settings.min_confidence)
    on_table = table_report(bundle.labels, describe, rows_of_split) if rows_of_split is not None else None
    report = {"model_version": bundle.version, "split": split, "table": on_table, **report}
    click.echo(f"\ntrack probabilities ({report['fusion']}):\n{fused_table(report, on_table)}")
    if out:
        path = out / FUSED_NAME
        path.write_text(json.dumps(report, indent=1) + "\n")
        png = reliability_png(report, out / CALIBRATION_PNG, f"{split} tracks from audio")
        click.echo(f"wrote {path} and {png}")


@cli.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 in a container).")
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.pass_context
def flower(ctx: click.Context, address: str, port: int) -> None:
    """Run Flower, the Celery web monitor: workers, tasks and queues on the broker [GENRETAG_BROKER_URL].

    Flower's own settings (FLOWER_BASIC_AUTH=user:password, FLOWER_URL_PREFIX, ...) are read from the environment.
    """
    from genretag.config import redact_url
    from genretag.worker.app import configure

    settings = settings_of(ctx)
    if settings.local_mode:
        raise click.UsageError("Flower watches Celery workers: set GENRETAG_BROKER_URL or --broker-url")
    click.echo(f"flower: http://{address}:{port}/ watching {redact_url(settings.broker_url)}", err=True)
    configure(settings).start(["flower", f"--address={address}", f"--port={port}"])


@cli.command()
@click.argument("roots", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--schedule-file", type=click.Path(dir_okay=False, path_type=Path), help="Beat's record of last runs [default: in the user data dir].")
@click.option("--loglevel", default="info", show_default=True, help="Celery log level.")
@click.pass_context
def beat(ctx: click.Context, roots: tuple[str, ...], schedule_file: Path | None, loglevel: str) -> None:
    """Rescan each ROOT [GENRETAG_LIBRARY_ROOTS] on GENRETAG_SCAN_SCHEDULE (cron; default 03:00 daily).

    One process: Celery beat, plus a single-slot worker on the scans queue that runs each scan
    (the producer); the classification itself goes to the `genretag worker` processes. The same as
    `celery -A genretag.worker.app beat` beside `celery -A genretag.worker.app worker -Q QUEUE.scans -P solo`.
    """
    from genretag.config import default_data_dir, redact_url
    from genretag.worker.schedule import beat_config, scan_queue

    settings = settings_of(ctx).replace(library_roots=tuple(os.path.realpath(r) for r in roots) or None)
    if settings.local_mode:
        raise click.UsageError("beat needs a broker: set GENRETAG_BROKER_URL or --broker-url "
                               "(without one, run `genretag scan ROOT` from cron; see docs/scheduling.md)")
    if not settings.library_roots:
        raise click.UsageError("nothing to scan: pass ROOT... or set GENRETAG_LIBRARY_ROOTS")
    try:
        beat_config(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    schedule_file = schedule_file or default_data_dir() / "celerybeat-schedule"
    schedule_file.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"beat: rescanning {', '.join(settings.library_roots)} at '{settings.scan_schedule}' "
               f"via queue {scan_queue(settings)} on {redact_url(settings.broker_url)}", err=True)
    from celery.utils.nodenames import default_nodename, host_format

    from genretag.worker.app import start_worker  # after the checks: importing it builds the schedule

    ctx.exit(start_worker(settings, beat=True, schedule_filename=str(schedule_file), pool_cls="solo", concurrency=1,
                          hostname=host_format(default_nodename("beat@%h")), queues=[scan_queue(settings)],
                          loglevel=loglevel))


@cli.command()
@click.argument("roots", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Only show what would be written (the default without --write).")
@click.option("--write", is_flag=True, help="Write the predicted genres into the files' genre tags.")
@click.option("--overwrite", is_flag=True, help="Replace existing genre tags too [default: fill only files without one].")
@click.option("--min-confidence", type=click.FloatRange(0, 1), help="Write only predictions at least this confident; without it, the uncertain flag decides where set [GENRETAG_TAG_MIN_CONFIDENCE].")
@click.option("--include-uncertain", is_flag=True, help="Also write predictions flagged uncertain.")
@click.option("--undo", is_flag=True, help="Restore the genre tags earlier writes replaced (add --dry-run to only show).")
@click.option("--quiet", "-q", is_flag=True, help="Print only failures and the totals.")
@click.pass_context
def tag(ctx: click.Context, roots: tuple[str, ...], dry_run: bool, write: bool, overwrite: bool,
        min_confidence: float | None, include_uncertain: bool, undo: bool, quiet: bool) -> None:
    """Write the predicted genre into each file's own genre tag under ROOT... [default: every track].

    Shows what it would do unless --write is given. Writes are atomic (a copy beside the file, then
    a rename) and logged, so --undo can restore what they replaced. Exits 1 if any file failed.
    """
    from genretag import tagging

    if dry_run and write:
        raise click.UsageError("--dry-run and --write contradict each other")
    settings = settings_of(ctx).replace(tag_min_confidence=min_confidence)

    def show(outcome: tagging.Outcome) -> None:
        if outcome.action == "failed":
            click.echo(f"{outcome.path}: failed: {outcome.detail}", err=True)
        elif not quiet:
            click.echo(f"{outcome.path}: {outcome.action}: {outcome.detail}")

    if undo:
        counts = tagging.undo(settings, roots, write=not dry_run, report=show)
    else:
        policy = tagging.TagPolicy(overwrite, settings.tag_min_confidence, include_uncertain,
                                   explicit=min_confidence is not None)
        counts = tagging.tag_library(settings, roots, policy, write=write, report=show)
    click.echo(", ".join(f"{action} {n}" for action, n in sorted(counts.items())) or "nothing to do", err=True)
    sys.exit(1 if counts["failed"] else 0)


# --- reading the library: query, stats, export ------------------------------------------------

PATH_HELP = "Path prefix, or a glob when it holds * ? [ (fnmatch rules: * also matches /)."


@cli.command()
@click.option("--genre", help="Predicted genre.")
@click.option("--min-confidence", type=click.FloatRange(0, 1), help="Lowest calibrated probability of the predicted genre.")
@click.option("--max-confidence", type=click.FloatRange(0, 1), help="Highest calibrated probability of the predicted genre.")
@click.option("--uncertain/--confident", "uncertain", default=None, help="Only calls stored as uncertain (confidence below GENRETAG_MIN_CONFIDENCE when classified), or only confident ones.")
@click.option("--path", "path_pattern", help=PATH_HELP)
@click.option("--status", help="pending, done, failed or missing.")
@click.option("--model-version", help="Predictions of this model [default: each track's latest].")
@click.option("--tag-genre", help="The file's own genre tag, as it is (case ignored).")
@click.option("--limit", type=click.IntRange(1), help="At most this many tracks.")
@click.option("--json", "fmt", flag_value="json", help="A JSON array.")
@click.option("--csv", "fmt", flag_value="csv", help="CSV with a header row.")
@click.pass_context
def query(ctx: click.Context, path_pattern: str | None, fmt: str | None, **filters: object) -> None:
    """List tracks with their genre, confidence, top 3 and model (or the error of failed tracks)."""
    from genretag.db import session_factory
    from genretag.db.queries import SUMMARY_FIELDS, TrackFilter, find_tracks
    from genretag.formats import TABLE_HEADER, table_line, write_csv, write_json

    try:
        flt = TrackFilter(path=path_pattern, **filters)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--status") from None
    out = sys.stdout
    with session_factory(settings_of(ctx).database_url)() as session:
        rows = find_tracks(session, flt)
        if fmt == "json":
            write_json((r.summary() for r in rows), out)
        elif fmt == "csv":
            write_csv((r.summary() for r in rows), SUMMARY_FIELDS, out)
        else:
            click.echo(TABLE_HEADER)
            for row in rows:
                click.echo(table_line(row))


@cli.command()
@click.option("--model-version", help="Count predictions of this model [default: each track's latest].")
@click.option("--failures", "top_failures", type=click.IntRange(1), default=10, show_default=True, help="Most common failure reasons shown.")
@click.option("--scans", "last_scans", type=click.IntRange(0), default=5, show_default=True, help="Latest scan runs shown.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def stats(ctx: click.Context, model_version: str | None, top_failures: int, last_scans: int, as_json: bool) -> None:
    """Tracks per genre and status, the confidence histogram, agreement with the files' genre tags, failures, scans."""
    from genretag.db import session_factory
    from genretag.db.queries import library_stats
    from genretag.formats import stats_text

    from genretag.bundlemeta import BundleError, read_meta

    settings = settings_of(ctx)
    genre_map = _tag_map(settings)
    try:  # the model in use: its labels match the tags that spell them, predicted or not
        labels = read_meta(settings.model_path).get("labels", [])
    except BundleError:
        labels = []
    with session_factory(settings.database_url)() as session:
        summary = library_stats(session, model_version, top_failures, last_scans, genre_map, labels)
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else stats_text(summary))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File to write [default: stdout].")
@click.option("--model-version", help="Predictions of this model [default: each track's latest].")
@click.pass_context
def export(ctx: click.Context, fmt: str, out: Path | None, model_version: str | None) -> None:
    """Write every track with its prediction, probabilities and votes (streamed from the database)."""
    from genretag.db import session_factory
    from genretag.db.queries import EXPORT_FIELDS, TrackFilter, find_tracks
    from genretag.formats import write_csv, write_json

    with session_factory(settings_of(ctx).database_url)() as session, \
            click.open_file(str(out or "-"), "w", encoding="utf-8", atomic=out is not None) as stream:
        rows = (r.full() for r in find_tracks(session, TrackFilter(model_version=model_version)))
        count = write_json(rows, stream) if fmt == "json" else write_csv(rows, EXPORT_FIELDS, stream)
    if out is not None:
        click.echo(f"wrote {count} tracks to {out}", err=True)


def _write_page(out: Path, page: str) -> None:
    """Write an HTML page atomically (a reader never sees half of it) and say where."""
    with click.open_file(str(out), "w", encoding="utf-8", atomic=True) as stream:
        stream.write(page)
    click.echo(f"wrote {out} ({len(page.encode()) / 1e6:.1f} MB)", err=True)


@cli.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="HTML file to write.")
@click.option("--model-version", help="Report predictions of this model [default: each track's current one].")
@click.option("--folders", "top_folders", type=click.IntRange(1), default=15, show_default=True, help="Largest top-level folders shown per root.")
@click.pass_context
def report(ctx: click.Context, out: Path, model_version: str | None, top_folders: int) -> None:
    """Write the library as one self-contained HTML page: genres, confidence, folders, tags, failures, scans, model."""
    from genretag.db import session_factory
    from genretag.bundlemeta import BundleError, read_meta
    from genretag.report.library import build

    settings = settings_of(ctx)
    try:
        meta = read_meta(settings.model_path)
    except BundleError as exc:
        click.echo(f"model card left out: {exc}", err=True)
        meta = None
    genre_map = _tag_map(settings)  # the tags are measured as `stats` measures them
    with session_factory(settings.database_url)() as session:
        page = build(session, meta, model_version, top_folders, genre_map)
    _write_page(out, page)


@cli.command()
@training_source("Explore the library's own genre tags (tracks under ROOT..., or all) as train --from-library "
                 "would train on them, instead of GTZAN.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="HTML file to write.")
@click.option("--splits", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder of {train,valid,test}_filtered.txt [default: DATA/splits].")
@click.option("--per-genre", type=click.IntRange(1), default=5, show_default=True, help="Clips per genre in the MFCC statistics.")
@click.pass_context
def explore(ctx: click.Context, roots: tuple[str, ...], data: Path | None, from_library: bool, mapped: bool,
            min_tracks: int, valid_fraction: float, out: Path, splits: Path | None, per_genre: int) -> None:
    """Write the training data as one HTML page: balance per split, examples, MFCC per genre, clip facts.

    With --from-library, the library's own tagged tracks under ROOT... instead of a GTZAN folder.
    """
    settings = settings_of(ctx)
    if from_library:
        if data or splits:
            raise click.UsageError("--from-library explores the library's tags: no --data, no --splits")
        from genretag.report.explore import build_library

        rows = _library_rows(settings, roots, mapped, min_tracks).rows
        if not rows:
            raise click.ClickException(f"no tagged track under {', '.join(roots) or 'the library'} has a label "
                                       f"with {min_tracks} tracks or more")
        _write_page(out, build_library(rows, settings.cache_dir, per_genre, valid_fraction))
        return
    if data is None or roots:
        raise click.UsageError("give --data GTZAN_FOLDER, or --from-library [ROOT...]")
    from genretag.report.explore import build
    from genretag.training.datasets import DatasetError, discover

    try:
        dataset = discover(data, splits)
    except DatasetError as exc:
        raise click.BadParameter(str(exc), param_hint="--data") from None
    _write_page(out, build(dataset, settings.cache_dir, per_genre))


def main() -> None:
    cli(auto_envvar_prefix=None)


if __name__ == "__main__":
    main()
