"""`mda serve` as a process: listeners, settings, hostile messages stored, quota counters
under concurrent delivery, graceful shutdown on SIGTERM, and a database that goes away."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import database_away
from tests.e2e.conftest import ServerProcess
from tests.lmtp import statuscodes as S
from tests.lmtp.client import LMTPClient, dot_stuff

Run = Callable[..., subprocess.CompletedProcess[bytes]]

MESSAGE = b"From: a@example.net\r\nSubject: hello\r\n\r\nHello there.\r\n"


def cli_json(mda: Run, *args: str):
    return json.loads(mda(*args, "--json", check=True).stdout)


def add_users(mda: Run, *users: str, quota: str | None = None) -> None:
    mda("db", "upgrade", check=True)
    for user in users:
        extra = ["--quota-storage", quota] if quota else []
        mda("user", "add", user, *extra, check=True)


async def deliver(server: ServerProcess, rcpts: list[str], message: bytes = MESSAGE,
                  sender: str = "a@example.net"):
    client = await server.client()
    try:
        return await client.transaction(sender, rcpts, message)
    finally:
        await client.quit()


async def test_unix_socket_listener(mda: Run, start_server, tmp_path: Path) -> None:
    add_users(mda, "bob@example.org")
    socket_path = tmp_path / "lmtp.sock"
    server = start_server(MDA_LMTP_LISTEN=f"unix:{socket_path}")
    assert server.where == f"unix:{socket_path}"
    result = await deliver(server, ["bob@example.org"])
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert len(cli_json(mda, "message", "list", "bob@example.org")) == 1
    assert server.stop() == 0
    assert not socket_path.exists()  # removed at shutdown


async def test_ipv6_listener(mda: Run, start_server) -> None:
    add_users(mda, "bob@example.org")
    try:
        server = start_server(MDA_LMTP_LISTEN="[::1]:0")
    except AssertionError as exc:
        if "cannot listen" in str(exc):
            pytest.skip("no IPv6 loopback here")
        raise
    assert server.where.startswith("[::1]:")
    result = await deliver(server, ["bob@example.org"])
    assert [r.status for r in result.after_data] == [S.DELIVERED]


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999", "unix:"])
def test_bad_listen_address_is_a_one_line_error(mda: Run, listen: str) -> None:
    proc = mda("serve", "--listen", listen)
    assert proc.returncode != 0
    lines = proc.stderr.decode().strip().splitlines()
    assert lines[-1].startswith("mda: error:") and "listen address" in lines[-1], lines


def test_port_in_use_is_a_one_line_error(mda: Run, start_server) -> None:
    server = start_server()
    proc = mda("serve", "--listen", server.where)
    assert proc.returncode != 0
    assert "cannot listen on" in proc.stderr.decode().strip().splitlines()[-1]


async def test_quota_full_tempfail(mda: Run, start_server) -> None:
    add_users(mda, "tiny@example.org", quota="10")
    server = start_server(MDA_QUOTA_FULL_TEMPFAIL="true")
    result = await deliver(server, ["tiny@example.org"])
    assert [r.status for r in result.after_data] == [S.OVER_QUOTA_TEMPFAIL]
    assert cli_json(mda, "message", "list", "tiny@example.org") == []


async def test_user_at_quota_is_refused_at_rcpt(mda: Run, start_server) -> None:
    mda("db", "upgrade", check=True)
    mda("user", "add", "one@example.org", "--quota-messages", "1", check=True)
    server = start_server()
    first = await deliver(server, ["one@example.org"])
    assert [r.status for r in first.after_data] == [S.DELIVERED]
    second = await deliver(server, ["one@example.org"])
    assert [r.status for r in second.rcpt] == [S.OVER_QUOTA]
    assert second.after_data == []


async def test_one_byte_over_the_limit_gets_552_for_every_recipient(
        mda: Run, start_server) -> None:
    add_users(mda, "a@example.org", "b@example.org", "c@example.org")
    limit = 2000
    server = start_server(MDA_MAX_MESSAGE_SIZE=str(limit))
    head = b"Subject: big\r\n\r\n"
    at_limit = head + b"x" * (limit - len(head) - 2) + b"\r\n"
    assert len(at_limit) == limit
    rcpts = ["a@example.org", "b@example.org", "c@example.org"]
    over = await deliver(server, rcpts, at_limit[:-2] + b"y\r\n")
    assert [r.status for r in over.after_data] == [S.TOO_BIG] * 3
    ok = await deliver(server, rcpts, at_limit)
    assert [r.status for r in ok.after_data] == [S.DELIVERED] * 3
    for rcpt in rcpts:
        assert len(cli_json(mda, "message", "list", rcpt)) == 1
    server.wait_for_log(r"rcpt=<a@example.org> result=too_big .*reply=\"552 5\.3\.4\"")


@pytest.mark.parametrize("message", [
    pytest.param(b"From: a@example.net\nSubject: bare lf\n\nline one\nline two\n", id="bare-lf"),
    pytest.param("From: J\u00f6rg <j@example.net>\r\nSubject: gr\u00fc\u00dfe\r\n\r\n"
                 "h\u00e9llo\r\n".encode(), id="8bit-headers"),
    pytest.param(b"Subject: nul\x00byte\r\n\r\nbo\x00dy\r\n", id="nul-bytes"),
    pytest.param(b"no headers at all, only a body line\r\n", id="no-headers"),
    pytest.param(b"Subject: \xff\xfe\r\n\r\n\xe9\r\n", id="invalid-utf8"),
])
async def test_hostile_message_is_stored(mda: Run, start_server, message: bytes) -> None:
    add_users(mda, "bob@example.org")
    server = start_server()
    result = await deliver(server, ["bob@example.org"], message)
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    (stored,) = cli_json(mda, "message", "list", "bob@example.org")
    shown = mda("message", "show", "bob@example.org", stored["mailbox"], str(stored["uid"]),
                check=True).stdout
    # The delivery layer may normalize line endings: compare the text modulo CRLF vs LF.
    def text(raw: bytes) -> bytes:
        return re.sub(rb"\r?\n", b"\n", raw).rstrip(b"\n")

    assert text(shown).endswith(text(message))
    assert shown.startswith(b"Return-Path: <a@example.net>\r\n")


async def test_null_sender_and_return_path(mda: Run, start_server) -> None:
    add_users(mda, "bob@example.org")
    server = start_server()
    result = await deliver(server, ["bob@example.org"], sender="")
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    (stored,) = cli_json(mda, "message", "list", "bob@example.org")
    shown = mda("message", "show", "bob@example.org", "INBOX", str(stored["uid"]),
                check=True).stdout
    assert shown.startswith(b"Return-Path: <>\r\n")


async def test_concurrent_deliveries_keep_quota_counters_exact(mda: Run, start_server) -> None:
    """Many connections deliver at once to users with a storage limit that some of the
    messages overflow: every counter must equal the sum over the stored messages, and no
    user may be over the limit."""
    users = [f"u{i}@example.org" for i in range(4)]
    add_users(mda, *users, quota="20K")
    server = start_server()
    bodies = [b"x" * (300 + 97 * n) + b"\r\n" for n in range(30)]

    async def connection(n: int) -> list[str]:
        client = await server.client()
        statuses = []
        for k in range(5):
            body = bodies[(n * 5 + k) % len(bodies)]
            message = f"Subject: c{n} m{k}\r\n\r\n".encode() + body
            result = await client.transaction("a@example.net", users, message)
            statuses += [r.status for r in result.rcpt if r.code != 250]
            statuses += [r.status for r in result.after_data]
        await client.quit()
        return statuses

    results = await asyncio.gather(*(connection(n) for n in range(16)))
    statuses = [s for batch in results for s in batch]
    assert set(statuses) <= {S.DELIVERED, S.OVER_QUOTA}, set(statuses)
    assert S.DELIVERED in statuses and S.OVER_QUOTA in statuses
    for user in users:
        messages = cli_json(mda, "message", "list", user)
        quota = cli_json(mda, "quota", "show", user)
        assert quota["storage_used"] == sum(m["size"] for m in messages)
        assert quota["messages_used"] == len(messages)
        assert quota["storage_used"] <= 20 * 1024
    delivered = sum(len(cli_json(mda, "message", "list", u)) for u in users)
    assert delivered == statuses.count(S.DELIVERED)


async def begin_data(client: LMTPClient, subject: str) -> None:
    """Start a transaction to bob@example.org and send the first half of its message, so
    that a delivery is in flight: MAIL, RCPT and DATA answered, the data not yet ended."""
    await client.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
    assert [r.status for r in await client.read_replies(2)] == [S.SENDER_OK, S.RCPT_OK]
    assert (await client.read_reply()).code == S.START_DATA
    await client.send(f"Subject: {subject}\r\n\r\nfirst half\r\n".encode())


async def test_sigterm_finishes_the_delivery_in_flight(mda: Run, start_server) -> None:
    add_users(mda, "bob@example.org")
    server = start_server(MDA_SHUTDOWN_TIMEOUT="20")
    busy = await server.client()
    idle = await server.client()
    await begin_data(busy, "in flight")

    server.proc.send_signal(signal.SIGTERM)
    server.wait_for_log(r"shutting down")
    # The idle connection is told to go away; new connections are refused.
    assert (await idle.read_reply()).status == S.SHUTTING_DOWN
    with pytest.raises(OSError):
        await LMTPClient.connect(server.host, server.port, timeout=5)

    await busy.send(b"second half\r\n.\r\n")
    assert (await busy.read_reply()).status == S.DELIVERED
    assert (await busy.read_reply()).status == S.SHUTTING_DOWN
    assert server.proc.wait(30) == 0
    (stored,) = cli_json(mda, "message", "list", "bob@example.org")
    assert stored["subject"] == "in flight"
    server.wait_for_log(r"stopped")


async def test_sighup_is_ignored_and_a_delivery_in_flight_is_answered(
        mda: Run, start_server) -> None:
    """SIGHUP's default action would kill mda mid-delivery; it is logged and ignored."""
    add_users(mda, "bob@example.org")
    server = start_server()
    busy = await server.client()
    await begin_data(busy, "across a hangup")
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log(r"SIGHUP ignored: .*restart mda")
    await busy.send(b"second half\r\n.\r\n")
    assert (await busy.read_reply()).status == S.DELIVERED
    await busy.quit()
    assert server.proc.poll() is None
    (stored,) = cli_json(mda, "message", "list", "bob@example.org")
    assert stored["subject"] == "across a hangup"


def test_sigint_stops_an_idle_server(start_server) -> None:
    server = start_server()
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(30) == 0


async def test_database_gone_gives_451_and_loses_nothing(mda: Run, start_server,
                                                         database_url: str) -> None:
    add_users(mda, "bob@example.org")
    server = start_server()
    with database_away(database_url):
        result = await deliver(server, ["bob@example.org"])
        assert [r.status for r in result.rcpt] == [S.TEMP_FAILURE]
    again = await deliver(server, ["bob@example.org"])
    assert [r.status for r in again.after_data] == [S.DELIVERED]


async def test_pipelined_message_with_dots(mda: Run, start_server) -> None:
    add_users(mda, "bob@example.org")
    server = start_server()
    message = b"Subject: dots\r\n\r\n.\r\n..two\r\n.leading\r\n"
    client = await server.client()
    await client.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
    await client.read_replies(3)
    await client.send(dot_stuff(message))
    assert (await client.read_reply()).status == S.DELIVERED
    await client.quit()
    (stored,) = cli_json(mda, "message", "list", "bob@example.org")
    shown = mda("message", "show", "bob@example.org", "INBOX", str(stored["uid"]),
                check=True).stdout
    assert shown.endswith(message)


@pytest.mark.sqlite_only
async def test_sigterm_with_a_delivery_blocked_on_a_lock_answers_and_exits(
        mda: Run, start_server, sqlite_url: str) -> None:
    """A delivery that has started (final "." received) is never cut half-way by the
    shutdown timeout: it waits for the lock, commits, every recipient is answered and
    logged, and the process exits 0 soon after."""
    import sqlite3
    import time

    users = [f"u{i}@example.org" for i in range(5)]
    add_users(mda, *users)
    server = start_server(MDA_SHUTDOWN_TIMEOUT="1")
    client = await server.client()
    db_file = sqlite_url.split("///", 1)[1]
    locker = sqlite3.connect(db_file, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        await client.send(b"MAIL FROM:<a@example.net>\r\n"
                          + b"".join(b"RCPT TO:<%s>\r\n" % u.encode() for u in users)
                          + b"DATA\r\n")
        replies = await client.read_replies(1 + len(users))
        assert [r.status for r in replies] == [S.SENDER_OK] + [S.RCPT_OK] * len(users)
        assert (await client.read_reply()).code == S.START_DATA
        await client.send(dot_stuff(MESSAGE))
        await asyncio.sleep(0.5)  # the delivery is now waiting for the lock
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_log(r"shutting down")
        await asyncio.sleep(2.5)  # past the shutdown timeout, lock still held
        assert server.proc.poll() is None
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    released = time.monotonic()
    after = await client.read_replies(len(users), timeout=40)
    assert [r.status for r in after] == [S.DELIVERED] * len(users)
    status = await asyncio.to_thread(server.proc.wait, 15)
    assert status == 0, server.log_text()
    assert time.monotonic() - released < 15
    for user in users:
        assert len(cli_json(mda, "message", "list", user)) == 1
        server.wait_for_log(rf"rcpt=<{re.escape(user)}> result=stored")
    server.wait_for_log(r"stopped")


def test_startup_line_names_the_database_and_sieve_scripts_dir(start_server, database_url: str,
                                                              tmp_path: Path) -> None:
    server = start_server(MDA_SIEVE_SCRIPTS_DIR="scripts")
    line = server.wait_for_log(r"listening for LMTP on")
    if database_url.startswith("sqlite"):
        database = f"sqlite {Path(database_url.split('///', 1)[1]).resolve()}"
    else:
        database = database_url  # as given: the test server's URL has no password to mask
    assert f"database {database}, " in line, line
    assert f"sieve scripts {(tmp_path / 'scripts').resolve()}" in line, line


def test_config_file_that_is_not_toml_is_a_one_line_error(mda: Run, mda_env: dict[str, str],
                                                          tmp_path: Path) -> None:
    bad = tmp_path / "mda.toml"
    bad.write_text('hostname = "unterminated\n')
    proc = mda("serve", env={**mda_env, "MDA_CONFIG": str(bad)})
    assert proc.returncode != 0
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mda: error:"), lines
    assert str(bad) in lines[0]
