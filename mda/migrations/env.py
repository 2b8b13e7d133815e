"""Alembic environment for mda: runs the revisions over mda's own async engine.

The URL comes from `config.attributes["url"]` (set by `mda.store.migrate`), else from the
`sqlalchemy.url` option, else from mda's settings. The engine is built by
`mda.store.engine.create_engine`, so SQLite gets the same BEGIN handling as at run time.

All pending revisions run in ONE transaction that first takes a lock, so several mda
processes starting at once on one database migrate it once: the first applies the revisions,
the others wait, then find it at head (PostgreSQL: a transaction-level advisory lock;
SQLite: BEGIN IMMEDIATE, the write lock). A failing revision rolls back the whole run.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from mda.store.engine import SQLITE_BEGIN_OPTION, create_engine
from mda.store.models import Base

MIGRATION_LOCK = 0x6D64615F6D6967  # pg_advisory_xact_lock key of mda's migrations

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        from mda.config import get_settings

        url = get_settings().database_url
    return url


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    dialect = connection.dialect.name if connection is not None else url.split(":")[0]
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        render_as_batch=dialect.startswith("sqlite"),
        compare_type=True,
        transaction_per_migration=True,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (`alembic upgrade --sql`)."""
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    # Begin the run's one transaction with the lock; alembic sees a transaction already open
    # and runs every revision inside it.
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    else:
        connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        connection.begin()
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Apply the migrations to the database."""
    asyncio.run(_run_online())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
