"""Store transactions: failures become StoreUnavailable, writes roll back, SQLite writers queue."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from mda.store import (
    Store,
    StoreUnavailable,
    UserExists,
    add_user,
    charge_quota,
    get_user,
    list_users,
)
from mda.store.migrate import upgrade_async
from tests.store.conftest import new_user


@pytest.mark.sqlite_only
async def test_missing_sqlite_file_is_unavailable_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.sqlite3"
    async with Store(f"sqlite+aiosqlite:///{path}") as store:
        with pytest.raises(StoreUnavailable, match="mda db upgrade"):
            async with store.read() as session:
                await list_users(session)
    assert not path.exists()


@pytest.mark.sqlite_only
async def test_unmigrated_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    async with Store(f"sqlite+aiosqlite:///{path}") as store:
        with pytest.raises(StoreUnavailable, match="no such table"):
            async with store.read() as session:
                await list_users(session)


async def test_unreachable_postgresql_is_unavailable() -> None:
    async with Store("postgresql+asyncpg://postgres@127.0.0.1:1/nothing") as store:
        with pytest.raises(StoreUnavailable):
            async with store.transaction() as session:
                await list_users(session)


async def test_an_exception_rolls_the_whole_transaction_back(store: Store) -> None:
    with pytest.raises(UserExists):
        async with store.transaction() as session:
            await add_user(session, "ann@example.com")
            await add_user(session, "joe@example.com")
            await add_user(session, "joe@example.com")
    async with store.read() as session:
        assert await list_users(session) == []


@pytest.mark.sqlite_only
async def test_sqlite_writer_waits_for_another_process_lock(sqlite_url: str) -> None:
    """A write lock held by another connection (another process, e.g. the CLI) is waited
    for under the busy timeout instead of failing with "database is locked"."""
    await upgrade_async(sqlite_url)
    path = sqlite_url.split("///", 1)[1]
    locked = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(1.0)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    await asyncio.to_thread(locked.wait)
    started = time.monotonic()
    async with Store(sqlite_url) as store:
        user = await new_user(store)
        async with store.transaction() as session:
            await charge_quota(session, user.id, 5)
        async with store.read() as session:
            assert (await get_user(session, user.address)).storage_used == 5
    holder.join()
    assert time.monotonic() - started >= 0.5


async def test_the_longest_timeouts_settings_allow_are_accepted_by_the_server(
        db_url: str) -> None:
    """MAX_MILLISECOND_TIMEOUT is what PostgreSQL's statement_timeout/lock_timeout and
    SQLite's busy_timeout take (2^31-1 ms), so a setting that passed validation never makes
    every connection fail."""
    from sqlalchemy import text

    from mda.config import MAX_MILLISECOND_TIMEOUT
    from mda.store.engine import EngineOptions

    await upgrade_async(db_url)
    options = EngineOptions(statement_timeout=MAX_MILLISECOND_TIMEOUT,
                            lock_timeout=MAX_MILLISECOND_TIMEOUT,
                            busy_timeout=MAX_MILLISECOND_TIMEOUT)
    async with Store(db_url, options) as store, store.read() as session:
        if store.is_sqlite:
            busy = (await session.execute(text("PRAGMA busy_timeout"))).scalar_one()
            assert busy == MAX_MILLISECOND_TIMEOUT * 1000
        else:
            shown = (await session.execute(text("SHOW statement_timeout"))).scalar_one()
            assert shown == (await session.execute(text("SHOW lock_timeout"))).scalar_one()
            assert shown == f"{MAX_MILLISECOND_TIMEOUT}s"


async def test_connect_timeout_is_named_with_the_server() -> None:
    """A server that accepts TCP but never speaks: the reason says which server and which
    timeout ran out, not a bare "TimeoutError"."""
    import socket

    from mda.store.engine import EngineOptions

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing"
        async with Store(url, EngineOptions(connect_timeout=0.3)) as store:
            with pytest.raises(StoreUnavailable) as caught:
                async with store.read() as session:
                    await list_users(session)
    assert str(caught.value) == (f"database unavailable: no connection to 127.0.0.1:{port}/"
                                 f"nothing within 0.3 s (MDA_DATABASE_CONNECT_TIMEOUT)")
