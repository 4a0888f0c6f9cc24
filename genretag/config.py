"""One settings object for the whole product.

Every tunable lives here. Values come from ``GENRETAG_*`` environment variables, and the CLI
overrides them with :meth:`Settings.replace`. Nothing else in the package reads the environment.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import platformdirs

APP_NAME = "genretag"
ENV_PREFIX = "GENRETAG_"
PACKAGED_MODELS = Path(__file__).parent / "data"
PACKAGED_MODEL = PACKAGED_MODELS / "default.genretag"


def default_data_dir() -> Path:
    """Per-user data directory (e.g. ``~/.local/share/genretag`` on Linux)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_cache_dir() -> Path:
    """Per-user cache directory (e.g. ``~/.cache/genretag``): training feature caches."""
    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def resolve_model(path: Path) -> Path:
    """A shipped bundle's name (``--model cnn``) to its file; any other value is a path, kept as given."""
    packaged = PACKAGED_MODELS / f"{path}.genretag"
    if len(path.parts) == 1 and not path.suffix and not path.exists() and packaged.is_file():
        return packaged
    return path


def default_database_url() -> str:
    return f"sqlite:///{default_data_dir() / 'genretag.sqlite3'}"


@dataclass(frozen=True)
class Settings:
    """Runtime configuration; see the README's table for what each field does."""

    # Storage and queue.
    database_url: str = field(default_factory=default_database_url)
    broker_url: str = ""  # empty: embedded local mode, no servers
    task_queue: str = "genretag"  # Celery queue the producer sends to and workers consume
    model_path: Path = PACKAGED_MODEL

    # Which segments vote (see classify.py).
    segments: str = "spread"  # "spread": staged windows over long tracks; "all": every segment
    windows: int = 60  # K, at most this many windows vote on a long track (bench/agreement.py)
    first_windows: int = 10  # windows of a staged vote's first stage; later stages add more while undecided
    vote_z: float = 1.0  # a staged vote stops when the leader's lead exceeds z standard errors (bench/agreement.py)
    spread_min_seconds: float = 60.0  # tracks shorter than this use all their segments
    edge_seconds: float = 0.0  # skipped at each end of a long track before spreading windows (0: measured best)

    # The call (see fusion.py): a track whose calibrated confidence is below this is stored as uncertain.
    min_confidence: float = 0.5  # from the artist-fold out-of-fold precision-coverage curve, never below even odds (docs/calibration.md)
    runner_up_ratio: float = 0.5  # the runner-up is named when its probability is at least this share of the top's

    # Inference and concurrency.
    batch_tracks: int = 8  # tracks whose segments share one forward pass in local mode
    workers: int = 0  # local-mode decode processes and Celery concurrency; 0 means one per core
    inference_threads: int = 0  # LiteRT (XNNPACK) threads per process; 0: cores // workers, every core where one process runs the model

    # Producer.
    library_roots: tuple[str, ...] = ()  # scanned by `genretag beat` and checked by workers
    follow_symlinks: bool = False
    max_outstanding: int = 64  # enqueued tasks not yet finished before the producer waits
    scan_schedule: str = "0 3 * * *"  # cron syntax for the nightly rescan
    scan_timezone: str = "UTC"  # IANA time zone scan_schedule is read in (e.g. "Europe/Paris")

    # Worker robustness.
    max_attempts: int = 3  # a file that fails or kills a worker this often is marked failed
    task_soft_time_limit: int = 120  # seconds
    task_time_limit: int = 180  # seconds; the process is killed past this

    # The files' own tags.
    tag_map: str = ""  # a file of extra "tag spelling = genre" lines for the mapping table (docs/tags.md)
    tag_min_confidence: float = 0.5  # `genretag tag` writes only predictions at least this confident

    # Training.
    cache_dir: Path = field(default_factory=default_cache_dir)  # per-track MFCC caches for training runs

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_path", resolve_model(Path(self.model_path)))

    def replace(self, **overrides: Any) -> Settings:
        """A copy with the given fields changed; ``None`` values are ignored (unset CLI options)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def local_mode(self) -> bool:
        return not self.broker_url

    @property
    def worker_count(self) -> int:
        return self.workers or (os.cpu_count() or 1)

    @property
    def threads_per_worker(self) -> int:
        """Inference threads per process, so that workers x threads fits the cores."""
        return self.inference_threads or max(1, (os.cpu_count() or 1) // self.worker_count)

    @property
    def threads_alone(self) -> int:
        """Inference threads for the one process that runs the model (`genretag classify`, local mode's
        main process, whose decoders wait on it when it is the bottleneck): every core."""
        return self.inference_threads or (os.cpu_count() or 1)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read every field from ``GENRETAG_<FIELD>`` where set."""
        environ = dict(os.environ if environ is None else environ)
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _parse(raw, hints[f.name])
        return cls(**values)


def _parse(raw: str, kind: Any) -> Any:
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is Path:
        return Path(raw).expanduser()
    if kind == tuple[str, ...]:
        return tuple(p for p in raw.split(os.pathsep) if p)
    return raw


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings.from_env()


def redact_url(url: str) -> str:
    """A database or broker URL safe to print: the password is replaced by ``***``."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (e.g. a broker URL with an odd scheme)
        import re

        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
