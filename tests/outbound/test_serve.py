"""Outbound mail through a real `mda serve`: users and scripts made with the real CLI,
messages over LMTP, and a real SMTP capture sink as the MTA (`MDA_SUBMISSION_URL`)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import ServerProcess
from tests.e2e.test_sieve_delivery import deliver, stored, user_with_script
from tests.lmtp import statuscodes as S
from tests.outbound.sink import CaptureSink, Tarpit, closed_port

Run = Callable[..., subprocess.CompletedProcess[bytes]]
Start = Callable[..., ServerProcess]
MESSAGE = (b"From: Alice <alice@example.net>\r\nTo: joe@example.org\r\nSubject: Plans\r\n"
           b"Message-ID: <plans-1@example.net>\r\n\r\nSee you.\r\n")
REDIRECT = 'require "copy";\nredirect :copy "joe@elsewhere.example";\n'


async def test_redirect_reaches_the_mta_with_the_original_envelope_sender(
        mda: Run, tmp_path: Path, start_server: Start, sink: CaptureSink) -> None:
    mda("db", "upgrade", check=True)
    user_with_script(mda, tmp_path, "joe@example.org", REDIRECT)
    server = start_server(MDA_SUBMISSION_URL=sink.url)
    assert await deliver(server, ["joe@example.org"], MESSAGE) == [S.DELIVERED]
    [sent] = sink.messages
    assert (sent.sender, sent.recipients) == ("alice@example.net", ("joe@elsewhere.example",))
    assert sent.data.startswith(b"X-Sieve-Redirected-From: <joe@example.org>\r\n")
    assert [box for box, _ in stored(mda, "joe@example.org")] == ["INBOX"]
    server.wait_for_log(r"redirect to <joe@elsewhere\.example> \(envelope from "
                        r"<alice@example\.net>\) sent")
    # The redirected copy coming back to the same user is kept, not sent round again.
    assert await deliver(server, ["joe@example.org"], sent.data) == [S.DELIVERED]
    assert len(sink.messages) == 1


async def test_mta_down_is_451_and_nothing_stored(mda: Run, tmp_path: Path,
                                                  start_server: Start) -> None:
    mda("db", "upgrade", check=True)
    user_with_script(mda, tmp_path, "joe@example.org", REDIRECT)
    mda("user", "add", "ann@example.org", check=True)
    server = start_server(MDA_SUBMISSION_URL=f"smtp://127.0.0.1:{closed_port()}",
                          MDA_SUBMISSION_TIMEOUT="5")
    replies = await deliver(server, ["joe@example.org", "ann@example.org"], MESSAGE)
    assert replies == [S.TEMP_FAILURE, S.DELIVERED]
    assert stored(mda, "joe@example.org") == []
    assert len(stored(mda, "ann@example.org")) == 1
    server.wait_for_log(r"<joe@example\.org>: deferred: redirect to <joe@elsewhere\.example> "
                        r".*not sent: cannot reach smtp://127\.0\.0\.1")
    server.wait_for_log(r"rcpt=<joe@example\.org> result=error")
    errors = mda("sieve", "errors", "joe@example.org", check=True).stdout
    assert b"cannot reach" in errors and b"the MTA will retry" in errors


async def test_a_stalled_mta_gets_every_reply_within_the_budget(
        mda: Run, tmp_path: Path, start_server: Start) -> None:
    """Three redirecting recipients and a tarpit MTA with the default 30 s step timeout:
    every reply after DATA arrives within MDA_SUBMISSION_BUDGET (here 2 s) and a little,
    long before an MTA's LMTP timeout would make it retry the stored recipient."""
    mda("db", "upgrade", check=True)
    for user in ("a", "b", "c"):
        user_with_script(mda, tmp_path, f"{user}@example.org", 'redirect "x@elsewhere.example";')
    mda("user", "add", "ann@example.org", check=True)
    async with Tarpit() as tarpit:
        server = start_server(MDA_SUBMISSION_URL=tarpit.url, MDA_SUBMISSION_BUDGET="2")
        started = time.monotonic()
        replies = await deliver(server, ["a@example.org", "ann@example.org", "b@example.org",
                                         "c@example.org"], MESSAGE)
        elapsed = time.monotonic() - started
    assert replies == [S.TEMP_FAILURE, S.DELIVERED, S.TEMP_FAILURE, S.TEMP_FAILURE]
    assert elapsed < 2 + 2.5
    server.wait_for_log(r"<c@example\.org>: deferred: redirect to <x@elsewhere\.example> .*"
                        r"not tried: the 2 s .*MDA_SUBMISSION_BUDGET")
    errors = mda("sieve", "errors", "a@example.org", check=True).stdout
    assert b"no answer within the time left" in errors


async def test_a_mistyped_redirect_is_kept_with_the_mta_reply_recorded(
        mda: Run, tmp_path: Path, start_server: Start, sink: CaptureSink) -> None:
    mda("db", "upgrade", check=True)
    user_with_script(mda, tmp_path, "joe@example.org", 'redirect "joe@elsewhre.example";\n')
    sink.refuse("joe@elsewhre.example", reply="550 5.1.2 bad destination domain")
    server = start_server(MDA_SUBMISSION_URL=sink.url)
    assert await deliver(server, ["joe@example.org"], MESSAGE) == [S.DELIVERED]
    assert [box for box, _ in stored(mda, "joe@example.org")] == ["INBOX"]
    errors = mda("sieve", "errors", "joe@example.org", check=True).stdout
    assert b"runtime" in errors and b"550 5.1.2 bad destination domain" in errors


async def test_vacation_once_per_sender(mda: Run, tmp_path: Path, start_server: Start,
                                        sink: CaptureSink) -> None:
    mda("db", "upgrade", check=True)
    user_with_script(mda, tmp_path, "joe@example.org",
                     'require "vacation";\nvacation "Back on Monday.";\n')
    server = start_server(MDA_SUBMISSION_URL=sink.url)
    for _ in range(2):
        assert await deliver(server, ["joe@example.org"], MESSAGE) == [S.DELIVERED]
    [reply] = sink.messages
    assert (reply.sender, reply.recipients) == ("", ("alice@example.net",))
    assert reply.message["Subject"] == "Auto: Plans"
    assert reply.message["Auto-Submitted"].startswith("auto-replied")
    listed = b"List-Id: <team.example.net>\r\n" + MESSAGE.replace(b"plans-1", b"plans-2")
    assert await deliver(server, ["joe@example.org"], listed) == [S.DELIVERED]
    assert len(sink.messages) == 1


async def test_without_submission_the_error_is_recorded(mda: Run, tmp_path: Path,
                                                         start_server: Start) -> None:
    mda("db", "upgrade", check=True)
    user_with_script(mda, tmp_path, "joe@example.org", REDIRECT)
    server = start_server()
    assert await deliver(server, ["joe@example.org"], MESSAGE) == [S.DELIVERED]
    errors = mda("sieve", "errors", "joe@example.org", check=True).stdout
    assert b"redirect: not available, no outbound submission is configured" in errors


async def test_detail_mailbox(mda: Run, tmp_path: Path, start_server: Start) -> None:
    mda("db", "upgrade", check=True)
    mda("user", "add", "joe@example.org", check=True)
    server = start_server(MDA_SAVE_TO_DETAIL_MAILBOX="true", MDA_MAILBOX_AUTOCREATE="true")
    assert await deliver(server, ["joe+news@example.org"], MESSAGE) == [S.DELIVERED]
    assert [box for box, _ in stored(mda, "joe@example.org")] == ["news"]
    shown = mda("message", "show", "joe@example.org", "news", "1", check=True).stdout
    assert b"Delivered-To: joe+news@example.org\r\n" in shown


def test_a_bad_submission_url_stops_serve_with_one_line(mda: Run,
                                                        mda_env: dict[str, str]) -> None:
    failed = mda("serve", env={**mda_env, "MDA_SUBMISSION_URL": "lmtp://secret:pw@mx:24",
                               "MDA_LMTP_LISTEN": "127.0.0.1:0"})
    assert failed.returncode != 0
    [line] = failed.stderr.decode().splitlines()
    assert "MDA_SUBMISSION_URL" in line and "unknown scheme lmtp:" in line
    assert "pw" not in line
