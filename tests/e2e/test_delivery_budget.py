"""`MDA_DELIVERY_BUDGET`: the recipients of one LMTP transaction share a time budget.

A real `mda serve` delivers one message to six users while the test holds a lock every
delivery needs (PostgreSQL: the `messages` table in ACCESS EXCLUSIVE mode; SQLite: the
database's write lock, `BEGIN IMMEDIATE` on a connection of the test's own). Without the
budget each recipient waits its own statement timeout (busy timeout on SQLite), one after
the other; with it, every reply comes once the budget is spent, every recipient gets
`451 4.3.0`, nothing is stored, and the next delivery after the lock is released succeeds.

A recipient whose COMMIT is in flight when the budget runs out is not cancelled: a deferred
constraint trigger (PostgreSQL) makes each COMMIT that stored a message take longer than
the budget, and that recipient gets 250 with its copy stored, the later ones 451.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.conftest import ServerProcess
from tests.lmtp import statuscodes as S

Run = Callable[..., subprocess.CompletedProcess[bytes]]

USERS = [f"user{n}@example.org" for n in range(1, 7)]
MESSAGE = b"From: a@example.net\r\nSubject: budget\r\n\r\nIn time?\r\n"
BUDGET = 3.0  # seconds
WAIT = 2.0  # seconds: statement timeout (PostgreSQL), busy timeout (SQLite)
# Budget, plus the grace a cancelled recipient gets to roll back, plus slack for a loaded
# machine; without the budget the six recipients would take at least 6 x WAIT = 12 s.
BOUND = BUDGET + 1.0 + 2.5


def add_users(mda: Run) -> None:
    mda("db", "upgrade", check=True)
    for user in USERS:
        mda("user", "add", user, check=True)


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def holding_the_write_lock(url: str) -> AsyncIterator[None]:
    """Keep, for the block, a lock every delivery's write transaction waits for."""
    if _is_sqlite(url):
        locker = sqlite3.connect(make_url(url).database, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            yield
        finally:
            locker.rollback()
            locker.close()
        return
    conn = await asyncpg.connect(_dsn(url))
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def stored(url: str) -> tuple[int, int, int]:
    """(message rows, sum of storage_used, sum of messages_used) of every user."""
    query = ("SELECT (SELECT count(*) FROM messages), "
             "COALESCE(SUM(storage_used), 0), COALESCE(SUM(messages_used), 0) FROM users")
    if _is_sqlite(url):
        conn = sqlite3.connect(make_url(url).database)
        try:
            return tuple(conn.execute(query).fetchone())  # type: ignore[return-value]
        finally:
            conn.close()
    conn = await asyncpg.connect(_dsn(url))
    try:
        return tuple(await conn.fetchrow(query))  # type: ignore[return-value]
    finally:
        await conn.close()


async def deliver(server: ServerProcess) -> tuple[list[str], float]:
    """Deliver MESSAGE to USERS; (the statuses after DATA, seconds from DATA to the last)."""
    client = await server.client()
    try:
        started = time.monotonic()
        result = await client.transaction("a@example.net", USERS, MESSAGE)
        elapsed = time.monotonic() - started
    finally:
        await client.quit()
    assert [reply.code for reply in result.rcpt] == [250] * len(USERS), result
    return [reply.status for reply in result.after_data], elapsed


async def test_a_held_lock_costs_the_transaction_at_most_its_budget(
        mda: Run, start_server: Callable[..., ServerProcess], database_url: str) -> None:
    add_users(mda)
    server = start_server(MDA_DELIVERY_BUDGET=f"{BUDGET:g}",
                          MDA_DATABASE_STATEMENT_TIMEOUT=f"{WAIT:g}",
                          MDA_DATABASE_BUSY_TIMEOUT=f"{WAIT:g}",
                          MDA_MANAGESIEVE_LISTEN="")
    async with holding_the_write_lock(database_url):
        statuses, elapsed = await deliver(server)
        print(f"\nlock held: {len(USERS)} replies after {elapsed:.2f} s "
              f"(budget {BUDGET:g} s, wait {WAIT:g} s)")
        assert statuses == [S.TEMP_FAILURE] * len(USERS), server.log_text()
        assert elapsed < BOUND, (elapsed, server.log_text())
    server.wait_for_log(rf"delivery budget of {BUDGET:g} s spent")
    assert await stored(database_url) == (0, 0, 0)

    statuses, _ = await deliver(server)
    assert statuses == [S.DELIVERED] * len(USERS), server.log_text()
    rows, storage, count = await stored(database_url)
    assert (rows, count) == (len(USERS), len(USERS)) and storage > 0
    assert await asyncio.to_thread(server.stop) == 0


SLOW_COMMIT = """
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_sleep(2); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON messages
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
"""


@pytest.mark.postgresql_only
async def test_a_commit_in_flight_when_the_budget_runs_out_is_not_cancelled(
        mda: Run, start_server: Callable[..., ServerProcess], database_url: str) -> None:
    add_users(mda)
    conn = await asyncpg.connect(_dsn(database_url))
    try:
        await conn.execute(SLOW_COMMIT)  # each COMMIT that stored a message takes 2 s
    finally:
        await conn.close()
    server = start_server(MDA_DELIVERY_BUDGET="1", MDA_MANAGESIEVE_LISTEN="")
    statuses, elapsed = await deliver(server)
    print(f"\nslow commit: {len(USERS)} replies after {elapsed:.2f} s (budget 1 s)")
    assert statuses == [S.DELIVERED] + [S.TEMP_FAILURE] * (len(USERS) - 1), \
        server.log_text()
    rows, _, count = await stored(database_url)
    assert (rows, count) == (1, 1)  # the recipient answered 250, and only it
    assert await asyncio.to_thread(server.stop) == 0
