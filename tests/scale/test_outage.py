"""PostgreSQL going away under a running `mda serve`: 451 4.3.0 per recipient, nothing
half-written, and the next delivery after the database returns succeeds without a restart.

The outages are real: mda talks to PostgreSQL through `PgProxy` (cut = a restart or a lost
host, freeze = a silent network), or its backends are killed with `pg_terminate_backend` (what
a server shutdown does to them), or the test holds a lock mda needs (statement_timeout,
lock_timeout, an exhausted pool). To catch a delivery in the middle of its transaction the
test holds the row lock of alice's INBOX: alice's transaction has charged her quota and waits
to take a UID when the outage hits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.conftest import ServerProcess
from tests.lmtp import statuscodes as S
from tests.lmtp.client import LMTPClient, TransactionResult, dot_stuff
from tests.scale.conftest import Cli, Launch
from tests.scale.pgproxy import PgProxy

ALICE, BOB = "alice@example.org", "bob@example.org"
SENDER = "a@example.net"
MESSAGE = b"From: a@example.net\r\nSubject: outage\r\n\r\nStill there?\r\n"
INBOX_ROW = ("SELECT m.id FROM mailboxes m JOIN users u ON u.id = m.user_id "
             "WHERE u.address = $1 AND m.name = 'INBOX' FOR UPDATE OF m")


@pytest.fixture
def db_url(pg_url: str) -> str:
    """This module is about PostgreSQL only."""
    return pg_url


@pytest.fixture
def users(cli: Cli) -> None:
    cli("db", "upgrade")
    cli("user", "add", ALICE)
    cli("user", "add", BOB)


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[PgProxy]:
    running = await PgProxy.start(pg_url)
    yield running
    await running.close()


def dsn(url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def holding(url: str, sql: str, *args: object) -> AsyncIterator[None]:
    """Run `sql` in a transaction of a connection of the test's own (not through the
    proxy) and keep that transaction, and its locks, open for the block."""
    conn = await asyncpg.connect(dsn(url))
    try:
        async with conn.transaction():
            await conn.execute(sql, *args)
            yield
    finally:
        await conn.close()


async def wait_until_mda_waits_for_a_lock(url: str, timeout: float = 15) -> None:
    """Wait until one of mda's backends waits for a lock."""
    conn = await asyncpg.connect(dsn(url))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'mda' AND wait_event_type = 'Lock'"):
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError("mda never waited for the lock")


async def terminate_mda_backends(url: str) -> int:
    """`pg_terminate_backend` every connection mda has to the test database."""
    conn = await asyncpg.connect(dsn(url))
    try:
        return len(await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'mda'"))
    finally:
        await conn.close()


async def state(url: str, user: str) -> tuple[int, int, int, int]:
    """(stored copies, storage_used, messages_used, INBOX uidnext) of a user."""
    conn = await asyncpg.connect(dsn(url))
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
            "        WHERE b.user_id = u.id), u.storage_used, u.messages_used, "
            "       (SELECT uidnext FROM mailboxes b WHERE b.user_id = u.id "
            "        AND b.name = 'INBOX') FROM users u WHERE u.address = $1", user)
    finally:
        await conn.close()
    return tuple(row)  # type: ignore[return-value]


async def deliver(server: ServerProcess, rcpts: list[str]) -> TransactionResult:
    client = await server.client()
    try:
        return await client.transaction(SENDER, rcpts, MESSAGE)
    finally:
        await client.quit()


def statuses(result: TransactionResult) -> list[str]:
    return [reply.status for reply in result.after_data]


async def open_transaction(server: ServerProcess, rcpts: list[str]) -> LMTPClient:
    """A connection that has had MAIL and RCPT accepted, before DATA."""
    client = await server.client()
    assert (await client.command(f"MAIL FROM:<{SENDER}>")).code == 250
    for rcpt in rcpts:
        assert (await client.command(f"RCPT TO:<{rcpt}>")).status == S.RCPT_OK
    return client


async def send_data(client: LMTPClient, count: int) -> list[str]:
    """DATA, the message, and the `count` replies after it; then QUIT."""
    assert (await client.command("DATA")).code == S.START_DATA
    await client.send(dot_stuff(MESSAGE))
    replies = await client.read_replies(count, timeout=60)
    await client.quit()
    return [reply.status for reply in replies]


async def test_connections_cut_mid_delivery(pg_url: str, users: None, proxy: PgProxy,
                                            launch: Launch) -> None:
    # In a thread: the proxy runs on this event loop, and mda migrates through it at start.
    server = await asyncio.to_thread(launch, MDA_DATABASE_URL=proxy.url(pg_url))
    before = await state(pg_url, ALICE)
    async with holding(pg_url, INBOX_ROW, ALICE):
        pending = asyncio.create_task(deliver(server, [BOB, ALICE]))
        await wait_until_mda_waits_for_a_lock(pg_url)
        proxy.cut()  # bob's copy is committed; alice's transaction is half-way
        result = await pending
    assert statuses(result) == [S.DELIVERED, S.TEMP_FAILURE]
    assert await state(pg_url, ALICE) == before  # rolled back: no copy, quota, UID
    assert (await state(pg_url, BOB))[0] == 1

    # While the database stays away, every recipient is refused for now at RCPT.
    refused = await deliver(server, [ALICE, BOB])
    assert [reply.status for reply in refused.rcpt] == [S.TEMP_FAILURE] * 2

    proxy.restore()
    assert statuses(await deliver(server, [ALICE, BOB])) == [S.DELIVERED] * 2
    assert server.proc.poll() is None
    copies, used, count, uidnext = await state(pg_url, ALICE)
    assert (copies, count, uidnext) == (1, 1, before[3] + 1) and used > 0
    await asyncio.to_thread(server.wait_for_log, r"<alice@example.org>: store unavailable")
    assert await asyncio.to_thread(server.stop) == 0  # while the proxy still runs


async def test_database_gone_between_rcpt_and_data(pg_url: str, users: None, proxy: PgProxy,
                                                   launch: Launch) -> None:
    server = await asyncio.to_thread(launch, MDA_DATABASE_URL=proxy.url(pg_url))
    client = await open_transaction(server, [ALICE, BOB])
    proxy.cut()
    assert await send_data(client, 2) == [S.TEMP_FAILURE] * 2  # one reply per recipient
    assert (await state(pg_url, ALICE))[:3] == (0, 0, 0)
    assert (await state(pg_url, BOB))[:3] == (0, 0, 0)
    proxy.restore()
    assert statuses(await deliver(server, [ALICE, BOB])) == [S.DELIVERED] * 2
    assert await asyncio.to_thread(server.stop) == 0


async def test_silent_network_ends_in_451_not_a_hang(pg_url: str, users: None,
                                                     proxy: PgProxy, launch: Launch) -> None:
    server = await asyncio.to_thread(launch, MDA_DATABASE_URL=proxy.url(pg_url),
                                     MDA_DATABASE_STATEMENT_TIMEOUT="1")
    client = await open_transaction(server, [ALICE, BOB])
    proxy.freeze()
    started = time.monotonic()
    assert await send_data(client, 2) == [S.TEMP_FAILURE] * 2
    waited = time.monotonic() - started
    assert waited < 20, waited  # the client's own timeout: statement_timeout + 2 s, per try
    proxy.restore()  # the same TCP connections carry bytes again
    assert statuses(await deliver(server, [ALICE, BOB])) == [S.DELIVERED] * 2
    copies, _, count, _ = await state(pg_url, ALICE)
    assert (copies, count) == (1, 1)
    print(f"\nfrozen network: 451 for both recipients after {waited:.1f} s")
    assert await asyncio.to_thread(server.stop) == 0


async def test_backends_terminated_idle_and_mid_delivery(pg_url: str, users: None,
                                                         launch: Launch) -> None:
    server = await asyncio.to_thread(launch)
    assert statuses(await deliver(server, [ALICE, BOB])) == [S.DELIVERED] * 2
    # Idle pooled connections killed (as by a server restart): the next delivery
    # reconnects (pre-ping) and succeeds.
    assert await terminate_mda_backends(pg_url) >= 1
    assert statuses(await deliver(server, [ALICE, BOB])) == [S.DELIVERED] * 2
    before = await state(pg_url, ALICE)
    async with holding(pg_url, INBOX_ROW, ALICE):
        pending = asyncio.create_task(deliver(server, [BOB, ALICE]))
        await wait_until_mda_waits_for_a_lock(pg_url)
        assert await terminate_mda_backends(pg_url) >= 1
        result = await pending
    assert statuses(result) == [S.DELIVERED, S.TEMP_FAILURE]
    assert await state(pg_url, ALICE) == before
    assert statuses(await deliver(server, [ALICE])) == [S.DELIVERED]
    assert (await state(pg_url, ALICE))[0] == before[0] + 1
    assert await asyncio.to_thread(server.stop) == 0


@pytest.mark.parametrize("settings", [
    {"MDA_DATABASE_STATEMENT_TIMEOUT": "1"},
    {"MDA_DATABASE_STATEMENT_TIMEOUT": "60", "MDA_DATABASE_LOCK_TIMEOUT": "1"},
], ids=["statement_timeout", "lock_timeout"])
async def test_a_lock_held_elsewhere_gives_451_after_the_timeout(
        pg_url: str, users: None, launch: Launch, settings: dict[str, str]) -> None:
    server = await asyncio.to_thread(launch, **settings)
    # At RCPT: looking the user up waits for the lock on the users table.
    async with holding(pg_url, "LOCK TABLE users IN ACCESS EXCLUSIVE MODE"):
        started = time.monotonic()
        result = await deliver(server, [ALICE, BOB])
        waited = time.monotonic() - started
    assert [reply.status for reply in result.rcpt] == [S.TEMP_FAILURE] * 2
    assert 1 <= waited < 10, waited
    # After DATA: each recipient waits for the mailboxes table, then gets 451.
    client = await open_transaction(server, [ALICE, BOB])
    async with holding(pg_url, "LOCK TABLE mailboxes IN ACCESS EXCLUSIVE MODE"):
        started = time.monotonic()
        assert await send_data(client, 2) == [S.TEMP_FAILURE] * 2
        waited = time.monotonic() - started
    assert 2 <= waited < 15, waited
    assert (await state(pg_url, ALICE))[:3] == (0, 0, 0)
    assert statuses(await deliver(server, [ALICE, BOB])) == [S.DELIVERED] * 2
    assert await asyncio.to_thread(server.stop) == 0


async def test_pool_exhausted_gives_451_after_the_pool_timeout(pg_url: str, users: None,
                                                               launch: Launch) -> None:
    server = await asyncio.to_thread(
        launch, MDA_DATABASE_POOL_SIZE="1", MDA_DATABASE_MAX_OVERFLOW="0",
        MDA_DATABASE_POOL_TIMEOUT="1")
    async with holding(pg_url, INBOX_ROW, ALICE):
        # The one pooled connection waits in alice's transaction for the INBOX row...
        pending = asyncio.create_task(deliver(server, [ALICE]))
        await wait_until_mda_waits_for_a_lock(pg_url)
        # ...so bob's lookup at RCPT finds no free connection within a second.
        started = time.monotonic()
        refused = await deliver(server, [BOB])
        waited = time.monotonic() - started
    assert [reply.status for reply in refused.rcpt] == [S.TEMP_FAILURE]
    assert 1 <= waited < 5, waited
    assert statuses(await pending) == [S.DELIVERED]
    assert statuses(await deliver(server, [BOB])) == [S.DELIVERED]
    assert await asyncio.to_thread(server.stop) == 0
