"""Alembic migrations applied programmatically to fresh SQLite files and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import LargeBinary, bindparam, inspect, text

from mda.store import (
    Store,
    StoreUnavailable,
    add_user,
    append_message,
    get_mailbox,
    get_user,
    list_messages,
    list_users,
    message_bytes,
)
from mda.store.blobs import CHUNK_SIZE, CHUNK_THRESHOLD, store_blob
from mda.store.engine import create_engine
from mda.store.migrate import MIGRATIONS_DIR, downgrade, head_revision, upgrade
from mda.store.models import Base

TABLES = {"users", "mailboxes", "message_blobs", "messages", "sieve_scripts", "sieve_errors",
          "sieve_duplicates", "sieve_vacation_replies", "message_blob_chunks"}


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


async def _insert_old_message(url: str, data: bytes) -> None:
    """A user with one message in INBOX, written with the SQL of revisions 0001-0003."""
    engine = create_engine(url)
    stamp = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO users (address, storage_used, messages_used, created_at) "
                "VALUES ('old@example.com', :size, 1, :now)"),
                {"size": len(data) + 5, "now": stamp})
            await conn.execute(text(
                "INSERT INTO mailboxes (user_id, name, uidvalidity, uidnext, created_at) "
                "SELECT id, 'INBOX', 1, 2, :now FROM users"), {"now": stamp})
            blob = (await conn.execute(text(
                "INSERT INTO message_blobs (data, size, refcount, created_at) "
                "VALUES (:data, :size, 1, :now) RETURNING id")
                .bindparams(bindparam("data", type_=LargeBinary)),
                {"data": data, "size": len(data), "now": stamp})).scalar_one()
            await conn.execute(text(
                "INSERT INTO messages (mailbox_id, uid, blob_id, header_prefix, size, flags, "
                "internal_date) SELECT id, 1, :blob, :prefix, :size, '', :now FROM mailboxes")
                .bindparams(bindparam("prefix", type_=LargeBinary)),
                {"blob": blob, "prefix": b"X: \r\n", "size": len(data) + 5, "now": stamp})
    finally:
        await engine.dispose()


async def _stored_messages(url: str) -> list[bytes]:
    """Every stored message (prefix and blob), by blob id, read through the store."""
    async with Store(url) as store:
        async with store.read() as session:
            users = await list_users(session)
            found = []
            for user in users:
                for info in await list_messages(session, user.id):
                    found.append(await message_bytes(session, user.id, info.mailbox,
                                                     info.uid))
            return found


async def _add_chunked_message(url: str, data: bytes) -> None:
    """A second message, whose blob is chunked, for the user of `_insert_old_message`."""
    async with Store(url) as store:
        async with store.transaction() as session:
            blob = await store_blob(session, data)
            user = await get_user(session, "old@example.com")
            box = await get_mailbox(session, user.id, "INBOX")
            await append_message(session, user_id=user.id, mailbox=box, blob_id=blob,
                                 blob_size=len(data), header_prefix=b"Y: \r\n",
                                 flags=frozenset(), internal_date=datetime.now(UTC))


@pytest.mark.parametrize("start", ["0001", "0002", "0003"])
def test_0004_upgrades_with_mail_present_and_downgrades_keeping_it(db_url: str,
                                                                   start: str) -> None:
    old = b"Subject: old\r\n\r\n" + os.urandom(CHUNK_THRESHOLD + 10)  # stays in data
    new = b"Subject: new\r\n\r\n" + os.urandom(2 * CHUNK_SIZE + 10)
    upgrade(db_url, start)
    asyncio.run(_insert_old_message(db_url, old))
    upgrade(db_url)
    assert asyncio.run(_sql(db_url, "SELECT id, chunked FROM message_blobs")) == [(1, False)]
    asyncio.run(_add_chunked_message(db_url, new))
    assert asyncio.run(_sql(db_url, "SELECT blob_id, count(*) FROM message_blob_chunks "
                                    "GROUP BY blob_id")) == [(2, 3)]
    assert asyncio.run(_stored_messages(db_url)) == [b"X: \r\n" + old, b"Y: \r\n" + new]

    downgrade(db_url, "0003")
    revision, tables, _ = asyncio.run(_inspect(db_url))
    assert revision == "0003" and "message_blob_chunks" not in tables
    blobs = asyncio.run(_sql(db_url, "SELECT id, data, size FROM message_blobs ORDER BY id"))
    assert [(i, bytes(data), size) for i, data, size in blobs] == [
        (1, old, len(old)), (2, new, len(new))]

    upgrade(db_url)
    assert asyncio.run(_stored_messages(db_url)) == [b"X: \r\n" + old, b"Y: \r\n" + new]
