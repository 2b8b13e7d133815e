"""Issue 2's acceptance test, end to end: a real `mda serve` process, users and scripts made
through the real CLI, one message over a raw LMTP socket (and the same through swaks) to a
user whose script files by subject, one whose script rejects, one with a tiny quota and an
unknown address; then the stored messages and quota counters read back through the CLI."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, write
from tests.lmtp import statuscodes as S

FILER, REJECTER, TINY, UNKNOWN = ("filer@example.org", "rejecter@Example.ORG",
                                  "tiny@example.org", "nobody@example.org")

FILE_BY_SUBJECT = """require ["fileinto", "mailbox"];
if header :contains "subject" "report" {
    fileinto :create "Reports";
}
"""
REJECT_ALL = """require "reject";
reject "No mail accepted here, sorry.";
"""

MESSAGE = (b"From: Alice <alice@example.net>\r\n"
           b"To: filer@example.org\r\n"
           b"Subject: Weekly report\r\n"
           b"Message-ID: <acceptance-1@example.net>\r\n"
           b"\r\n"
           + b"Numbers are up this week.\r\n" * 20)

Run = Callable[..., subprocess.CompletedProcess[bytes]]


def cli_json(mda: Run, *args: str):
    proc = mda(*args, "--json", check=True)
    return json.loads(proc.stdout)


@pytest.fixture
def three_users(mda: Run, tmp_path: Path) -> None:
    """The three users of the acceptance test, made through the CLI."""
    mda("db", "upgrade", check=True)
    mda("user", "add", FILER, check=True)
    mda("user", "add", "rejecter@example.org", check=True)
    mda("user", "add", TINY, "--quota-storage", "100", check=True)
    mda("sieve", "put", FILER, "bysubject", write(tmp_path, "filer.sieve", FILE_BY_SUBJECT),
        "--activate", check=True)
    mda("sieve", "put", "rejecter@example.org", "no", write(tmp_path, "rej.sieve", REJECT_ALL),
        "--activate", check=True)


def check_store_after_delivery(mda: Run, sent: bytes = MESSAGE) -> None:
    """The filer's copy (of `sent`, the message as it went over the wire) is in Reports;
    nothing for the others; counters match."""
    messages = cli_json(mda, "message", "list", FILER)
    assert len(messages) == 1, messages
    (stored,) = messages
    assert stored["mailbox"] == "Reports"
    assert stored["subject"] == "Weekly report"
    assert "alice@example.net" in stored["from"]
    # The stored size counts the headers we add (Return-Path, Delivered-To, Received).
    assert stored["size"] > len(sent)
    shown = mda("message", "show", FILER, "Reports", str(stored["uid"]), check=True).stdout
    assert shown.endswith(sent)
    assert b"Delivered-To: filer@example.org" in shown
    assert len(shown) == stored["size"]

    assert cli_json(mda, "quota", "show", FILER) == {
        "storage_used": stored["size"], "storage_limit": None,
        "messages_used": 1, "messages_limit": None}
    assert cli_json(mda, "message", "list", "rejecter@example.org") == []
    assert cli_json(mda, "message", "list", TINY) == []
    assert cli_json(mda, "quota", "show", TINY) == {
        "storage_used": 0, "storage_limit": 100, "messages_used": 0, "messages_limit": None}


async def test_acceptance_over_raw_lmtp(three_users: None, start_server, mda: Run) -> None:
    server: ServerProcess = start_server()
    client = await server.client()
    await client.send(
        b"MAIL FROM:<alice@example.net>\r\n"
        + b"".join(f"RCPT TO:<{rcpt}>\r\n".encode() for rcpt in (FILER, REJECTER, TINY, UNKNOWN))
        + b"DATA\r\n")
    assert (await client.read_reply()).status == S.SENDER_OK
    rcpt = [(await client.read_reply()).status for _ in range(4)]
    assert rcpt == [S.RCPT_OK, S.RCPT_OK, S.RCPT_OK, S.UNKNOWN_USER]
    assert (await client.read_reply()).code == S.START_DATA
    await client.send(MESSAGE + b".\r\n")
    after = [await client.read_reply() for _ in range(3)]
    assert [r.status for r in after] == [S.DELIVERED, S.SIEVE_REJECT, S.OVER_QUOTA]
    assert "No mail accepted here, sorry." in after[1].text
    assert (await client.command("NOOP")).status == "250 2.0.0"  # nothing else was sent
    await client.quit()

    check_store_after_delivery(mda)
    # One log line per recipient outcome: queue id, recipient, result, mailbox(es), ms.
    line = server.wait_for_log(r"rcpt=<filer@example.org> result=stored")
    assert re.search(r": \w+: rcpt=<filer@example.org> result=stored mailboxes=Reports "
                     r"ms=\d+\.\d reply=\"250 2\.0\.0\"", line), line
    server.wait_for_log(r"rcpt=<rejecter@Example.ORG> result=rejected .*reply=\"550 5\.7\.1\"")
    server.wait_for_log(r"rcpt=<tiny@example.org> result=over_quota .*reply=\"552 5\.2\.2\"")
    assert server.stop() == 0


async def test_acceptance_through_swaks(three_users: None, start_server, mda: Run,
                                        require_tool, tmp_path: Path) -> None:
    swaks = require_tool("swaks")
    server: ServerProcess = start_server()
    proc = subprocess.run(
        [swaks, "--protocol", "LMTP", "--server", server.host, "--port", str(server.port),
         "--helo", "mta.test", "--from", "alice@example.net",
         "--to", ",".join([FILER, REJECTER, TINY, UNKNOWN]),
         "--data", write(tmp_path, "message.eml", MESSAGE), "--timeout", "30"],
        capture_output=True, timeout=120)
    transcript = proc.stdout.decode("utf-8", "replace")
    # Server lines in swaks' transcript start with "<-" (success) or "<**" (failure).
    replies = [re.sub(r"^<\*?\*?[-~]?\s*", "", line) for line in transcript.splitlines()
               if line.startswith("<")]
    rcpt_replies = [r for r in replies if re.match(r"\d{3} \d\.\d\.\d <", r)
                    and not r.startswith(S.SENDER_OK)]
    statuses = [" ".join(r.split()[:2]) for r in rcpt_replies]
    # RCPT: three accepted, the unknown one refused; after DATA: one reply each.
    assert statuses == [S.RCPT_OK, S.RCPT_OK, S.RCPT_OK, S.UNKNOWN_USER,
                        S.DELIVERED, S.SIEVE_REJECT, S.OVER_QUOTA], transcript
    # swaks ends the data with one more CRLF after the file's own last line ending.
    check_store_after_delivery(mda, MESSAGE + b"\r\n")
    assert server.stop() == 0
