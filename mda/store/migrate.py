"""Schema migrations: apply the alembic revisions in `mda/migrations/` programmatically.

No `alembic.ini` is read at run time and the current directory does not matter: the
revision scripts ship inside the `mda` package (`mda.migrations`, found through its
`__file__`, so an installed wheel finds them too), and the database URL is handed to
`mda/migrations/env.py` through the alembic `Config` object. `mda db upgrade` and
`mda serve` (at start) call `upgrade`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import mda.migrations
from mda.store.engine import is_unavailable, error_reason, ensure_sqlite_directory
from mda.store.errors import StoreUnavailable

MIGRATIONS_DIR = Path(mda.migrations.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An alembic configuration for `url` that needs no ini file.

    Args:
        url: SQLAlchemy async URL of the database.

    Returns:
        The config; `env.py` reads the URL from `config.attributes["url"]`.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def head_revision() -> str:
    """The newest revision id in `mda/migrations/versions`."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (default: the newest).

    Creates the parent directory of a SQLite file when it is missing. Must not be called
    from a running event loop (use `upgrade_async` there).

    Args:
        url: SQLAlchemy async URL.
        revision: alembic revision to upgrade to.

    Raises:
        StoreUnavailable: the database cannot be reached, or a revision failed; the failed
            revision was rolled back (migrations are transactional on SQLite and PostgreSQL).
    """
    ensure_sqlite_directory(url)
    try:
        command.upgrade(alembic_config(url), revision)
    except StoreUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"database unavailable: {error_reason(exc)}") from exc
        raise StoreUnavailable(f"migration failed: {error_reason(exc)}") from exc


def downgrade(url: str, revision: str) -> None:
    """Take the schema back to `revision` ("base" drops every table mda created).

    Raises:
        StoreUnavailable: as for `upgrade`.
    """
    try:
        command.downgrade(alembic_config(url), revision)
    except Exception as exc:
        raise StoreUnavailable(f"migration failed: {error_reason(exc)}") from exc


async def upgrade_async(url: str, revision: str = "head") -> None:
    """`upgrade` for callers inside an event loop: runs it in a worker thread.

    Raises:
        StoreUnavailable: as for `upgrade`.
    """
    await asyncio.to_thread(upgrade, url, revision)
