"""Alembic migrations applied programmatically to fresh SQLite files and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from mda.store import Store, StoreUnavailable, add_user, list_users
from mda.store.engine import create_engine
from mda.store.migrate import MIGRATIONS_DIR, downgrade, head_revision, upgrade
from mda.store.models import Base

TABLES = {"users", "mailboxes", "message_blobs", "messages", "sieve_scripts", "sieve_errors",
          "sieve_duplicates"}


async def _inspect(url: str) -> tuple[str | None, set[str], list]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            def look(sync_conn):
                context = MigrationContext.configure(
                    sync_conn, opts={"compare_type": True, "compare_server_default": True})
                diff = compare_metadata(context, Base.metadata)
                return context.get_current_revision(), set(inspect(sync_conn).get_table_names()), diff
            return await conn.run_sync(look)
    finally:
        await engine.dispose()


def test_upgrade_creates_the_schema_the_models_describe(db_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no alembic.ini here: the migrations are found from the package
    upgrade(db_url)
    revision, tables, diff = asyncio.run(_inspect(db_url))
    assert revision == head_revision()
    assert TABLES <= tables
    assert diff == []


def test_upgrade_twice_is_a_no_op_and_keeps_data(db_url: str) -> None:
    upgrade(db_url)

    async def add_and_list() -> list[str]:
        async with Store(db_url) as store:
            async with store.transaction() as session:
                await add_user(session, "joe@example.com")
            upgrade_in_thread = asyncio.to_thread(upgrade, db_url)
            await upgrade_in_thread
            async with store.read() as session:
                return [u.address for u in await list_users(session)]

    assert asyncio.run(add_and_list()) == ["joe@example.com"]


def test_downgrade_to_base_removes_every_table(db_url: str) -> None:
    upgrade(db_url)
    downgrade(db_url, "base")
    revision, tables, _ = asyncio.run(_inspect(db_url))
    assert revision is None
    assert not (TABLES & tables)


@pytest.mark.sqlite_only
def test_sqlite_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "mda.sqlite3"
    upgrade(f"sqlite+aiosqlite:///{path}")
    assert path.is_file()


@pytest.mark.sqlite_only
def test_relative_sqlite_path_is_relative_to_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    upgrade("sqlite+aiosqlite:///var/mda.sqlite3")
    assert (tmp_path / "var" / "mda.sqlite3").is_file()


def test_unreachable_database_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="unavailable"):
        upgrade("postgresql+asyncpg://postgres@127.0.0.1:1/nothing")


def test_unknown_driver_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable, match="cannot use database URL"):
        upgrade("nosuchdb+driver://x/y")


def test_every_revision_chains_and_stands_alone() -> None:
    """Revisions must not import mda: later model changes must not alter old revisions."""
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        source = path.read_text()
        assert "import mda" not in source and "from mda" not in source, path.name


@pytest.mark.sqlite_only
def test_sqlite_is_in_wal_mode_after_upgrade(sqlite_url: str) -> None:
    upgrade(sqlite_url)

    async def mode() -> str:
        async with Store(sqlite_url) as store:
            async with store.read() as session:
                return (await session.execute(text("PRAGMA journal_mode"))).scalar_one()

    assert asyncio.run(mode()) == "wal"
    assert os.path.exists(sqlite_url.split("///", 1)[1])


async def _sql(url: str, *statements: str) -> list[tuple]:
    """Run raw SQL statements in one transaction; the rows of the last one."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = None
            for statement in statements:
                result = await conn.execute(text(statement))
            return [tuple(row) for row in result] if result is not None and result.returns_rows \
                else []
    finally:
        await engine.dispose()


def test_0002_backfills_special_use_mailboxes_and_downgrades(db_url: str) -> None:
    upgrade(db_url, "0001")
    stamp = "'2024-05-01 12:00:00'"
    asyncio.run(_sql(
        db_url,
        f"INSERT INTO users (id, address, storage_used, messages_used, created_at) VALUES "
        f"(1, 'old@example.com', 0, 0, {stamp}), (2, 'own@example.com', 0, 0, {stamp})",
        f"INSERT INTO mailboxes (user_id, name, uidvalidity, uidnext, special_use, created_at) "
        f"VALUES (1, 'INBOX', 1, 1, NULL, {stamp}), (1, 'Junk', 1, 5, NULL, {stamp}), "
        f"(2, 'INBOX', 1, 1, NULL, {stamp}), (2, 'Spam', 1, 1, '\\Junk', {stamp}), "
        f"(2, 'Trash', 1, 1, '\\Flagged', {stamp})"))
    upgrade(db_url)
    rows = asyncio.run(_sql(db_url, "SELECT user_id, name, special_use, uidnext FROM mailboxes "
                                    "ORDER BY user_id, name"))
    assert rows == [
        (1, "Archive", "\\Archive", 1), (1, "Drafts", "\\Drafts", 1), (1, "INBOX", None, 1),
        (1, "Junk", "\\Junk", 5), (1, "Sent", "\\Sent", 1), (1, "Trash", "\\Trash", 1),
        (2, "Archive", "\\Archive", 1), (2, "Drafts", "\\Drafts", 1), (2, "INBOX", None, 1),
        (2, "Sent", "\\Sent", 1), (2, "Spam", "\\Junk", 1), (2, "Trash", "\\Flagged", 1),
    ]
    assert "sieve_duplicates" in asyncio.run(_inspect(db_url))[1]
    downgrade(db_url, "0001")
    revision, tables, _ = asyncio.run(_inspect(db_url))
    assert revision == "0001" and "sieve_duplicates" not in tables
    assert len(asyncio.run(_sql(db_url, "SELECT id FROM mailboxes"))) == 12  # mail is kept
    upgrade(db_url)
    assert asyncio.run(_inspect(db_url))[0] == head_revision()
