"""The ``genretag`` command group: every command is a thin view onto the package's functions.

Heavy imports (TensorFlow, librosa, SQLAlchemy) happen inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from genretag.config import Settings, get_settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), help="Model bundle [GENRETAG_MODEL_PATH].")
@click.option("--database-url", help="SQLAlchemy URL [GENRETAG_DATABASE_URL]; default: SQLite in the user data dir.")
@click.option("--broker-url", help="Celery broker URL [GENRETAG_BROKER_URL]; empty: embedded local mode.")
@click.option("--segments", type=click.Choice(["spread", "all"]), help="Vote over K spread windows or every segment [GENRETAG_SEGMENTS].")
@click.option("--windows", type=click.IntRange(1), help="K, windows voted over a long track [GENRETAG_WINDOWS].")
@click.option("--workers", type=click.IntRange(0), help="Processes for decoding / Celery concurrency; 0 = cores [GENRETAG_WORKERS].")
@click.pass_context
def cli(ctx: click.Context, **overrides: object) -> None:
    """Tag the genre of every track in a music collection."""
    ctx.obj = get_settings().replace(**overrides)


def settings_of(ctx: click.Context) -> Settings:
    return ctx.find_root().obj


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.pass_context
def classify(ctx: click.Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Print the genre of each FILE, its confidence, the top 3 and the segment votes."""
    from genretag.audio import AudioError
    from genretag.classify import Classifier

    classifier = Classifier.load(settings_of(ctx))
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
            f"{path}: {result.genre} (votes {result.vote_share:.0%}, mean p {result.mean_probability:.2f})\n"
            f"  top 3: {top}\n"
            f"  votes over {result.segments_used} {result.segment_mode} segments: {votes}"
        )
    sys.exit(1 if failed else 0)


def main() -> None:
    cli(auto_envvar_prefix=None)


if __name__ == "__main__":
    main()
