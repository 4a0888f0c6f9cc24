"""Alembic environment: run on a connection handed over by genretag.db.engine, or on the configured URL."""

from __future__ import annotations

from alembic import context

from genretag.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_on(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    from genretag.config import get_settings
    from genretag.db.engine import create

    with create(get_settings().database_url).begin() as conn:
        run_on(conn)


if context.is_offline_mode():
    raise SystemExit("genretag migrations run online only")
run_online()
