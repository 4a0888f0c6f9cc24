"""Engines and sessions: one engine per process and URL, migrated to the newest schema on first use.

Engines hold connection pools, which must not cross a ``fork``; the cache is keyed by process id,
so a forked Celery child builds its own. SQLite runs in WAL mode with a busy timeout, so the
local-mode writer and readers (``genretag query`` in another shell) coexist.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from genretag.config import redact_url

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_MIGRATION_LOCK = 0x67656E7265  # pg_advisory_xact_lock key shared by every genretag process
# The newest revision in migrations/versions (tests/test_db.py checks): a database stamped with it needs no
# migration, and seeing that takes one SELECT instead of importing Alembic (a tenth of a second per command).
SCHEMA_REVISION = "0005"

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def create(url: str) -> Engine:
    """A new engine for ``url`` with the per-dialect settings this product relies on (not migrated)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine(url: str) -> Engine:
    """This process's engine for ``url``, created and migrated to head on first call."""
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create(url)
            upgrade(engine)
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Forget engines inherited from a parent process without closing its connections."""
    with _lock:
        for (pid, _), engine in list(_engines.items()):
            if pid != os.getpid():
                engine.dispose(close=False)
        _engines.clear()


def forget_engine(url: str) -> None:
    """Close this process's engine for ``url`` (tests that drop their database call it)."""
    with _lock:
        engine = _engines.pop((os.getpid(), url), None)
    if engine is not None:
        engine.dispose()


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with session_factory(url).begin() as session:
        yield session


def alembic_config(engine: Engine | None = None):
    """An Alembic config for the migrations shipped in the package (no alembic.ini on disk needed)."""
    from alembic.config import Config

    cfg = Config(str(Path(__file__).parent / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to head; safe when many processes start at once (a lock serialises them)."""
    if _stamped(engine) == [SCHEMA_REVISION]:
        return
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin chatter is not for users
    if current_revision(engine) == head_revision():
        return
    from alembic import command

    log.info("migrating %s to %s", redact_url(engine.url.render_as_string(hide_password=False)), head_revision())
    with _migration_lock(engine) as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _stamped(engine: Engine) -> list[str]:
    """The revisions in ``alembic_version``, read without Alembic (none: a new database)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return []
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


@contextmanager
def _migration_lock(engine: Engine) -> Iterator:
    """A connection holding a cross-process lock for the migration.

    PostgreSQL: a transaction-level advisory lock (DDL is transactional there). SQLite: an
    exclusive ``flock`` on a file beside the database, since its DDL is not run in a transaction.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            yield conn
        return
    database = engine.url.database
    if not database or database == ":memory:":
        with engine.begin() as conn:
            yield conn
        return
    with open(f"{database}.migrate-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
