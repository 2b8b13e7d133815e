"""Outbound mail through a real `mda serve`: users and scripts made with the real CLI,
messages over LMTP, and a real SMTP capture sink as the MTA (`MDA_SUBMISSION_URL`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import ServerProcess
from tests.e2e.test_sieve_delivery import deliver, stored, user_with_script
from tests.lmtp import statuscodes as S
from tests.outbound.sink import CaptureSink, closed_port

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
    server.wait_for_log(r"rcpt=<joe@example\.org> result=error")


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
