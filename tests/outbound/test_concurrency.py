"""Vacation replies and redirects stay once-per-period when deliveries race: a real
`mda serve` on SQLite and on PostgreSQL, several LMTP connections delivering at the same
moment, and a real SMTP capture sink as the MTA.

The MTA delivers over parallel connections, so messages from one sender often arrive
together; RFC 5230 §4.1 still allows one reply per sender and period. The early read that
skips messages already sent cannot see a delivery that has not committed yet; the claim in
the recipient's write transaction must.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess
from tests.e2e.test_sieve_delivery import deliver, stored, user_with_script
from tests.lmtp import statuscodes as S
from tests.outbound.sink import CaptureSink

Run = Callable[..., subprocess.CompletedProcess[bytes]]
Start = Callable[..., ServerProcess]
PARALLEL = 6


def message(n: int, message_id: str | None = None) -> bytes:
    return (b"From: Alice <alice@example.net>\r\nTo: joe@example.org\r\nSubject: Plans %d\r\n"
            b"Message-ID: <%s>\r\n\r\nSee you.\r\n"
            % (n, (message_id or f"plans-{n}@example.net").encode()))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, mda: Run, mda_env: dict[str, str],
            sqlite_url: str) -> tuple[Run, dict[str, str]]:
    """(`mda` runner, extra server settings) for the backend under test."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    env = {**mda_env, "MDA_DATABASE_URL": url}

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess[bytes]:
        return mda(*args, env=env, **kwargs)

    run("db", "upgrade", check=True)
    return run, {"MDA_DATABASE_URL": url}


async def test_simultaneous_messages_from_one_sender_get_one_vacation_reply(
        backend: tuple[Run, dict[str, str]], tmp_path: Path, start_server: Start,
        sink: CaptureSink) -> None:
    run, settings = backend
    user_with_script(run, tmp_path, "joe@example.org",
                     'require "vacation";\nvacation "Back on Monday.";\n')
    server = start_server(MDA_SUBMISSION_URL=sink.url, **settings)
    replies = await asyncio.gather(*(deliver(server, ["joe@example.org"], message(n))
                                     for n in range(PARALLEL)))
    assert replies == [[S.DELIVERED]] * PARALLEL
    assert len(stored(run, "joe@example.org")) == PARALLEL
    assert [(m.sender, m.recipients) for m in sink.messages] == [("", ("alice@example.net",))]
    assert server.log_text().count("not sent: already sent within its period") \
        == PARALLEL - 1


async def test_one_message_arriving_simultaneously_is_redirected_once(
        backend: tuple[Run, dict[str, str]], tmp_path: Path, start_server: Start,
        sink: CaptureSink) -> None:
    run, settings = backend
    user_with_script(run, tmp_path, "joe@example.org",
                     'require "copy";\nredirect :copy "joe@elsewhere.example";\n')
    server = start_server(MDA_SUBMISSION_URL=sink.url, **settings)
    same = message(1, "same@example.net")
    replies = await asyncio.gather(*(deliver(server, ["joe@example.org"], same)
                                     for _ in range(PARALLEL)))
    assert replies == [[S.DELIVERED]] * PARALLEL
    assert [m.recipients for m in sink.messages] == [("joe@elsewhere.example",)]
