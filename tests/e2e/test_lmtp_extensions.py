"""LMTP service extensions through a real `mda serve`, with users made through the real CLI
and stored mail read back through it: CHUNKING/BDAT (RFC 3030) including a 50 MB message in
chunks and the same through DATA, SMTPUTF8 (RFC 6531) to a UTF-8 address, a recipient
given twice in one transaction, and STARTTLS (RFC 3207) with a certificate made for the
test."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess
from tests.lmtp import statuscodes as S
from tests.lmtp.client import bdat_chunk, split_chunks
from tests.managesieve.tls import make_test_pki

Run = Callable[..., subprocess.CompletedProcess[bytes]]

MESSAGE = b"From: a@example.net\r\nSubject: hello\r\n\r\nHello there.\r\n"
UTF8_USER = "j\u00f6rg@ex\u00e4mple.test"


def cli_json(mda: Run, *args: str):
    return json.loads(mda(*args, "--json", check=True).stdout)


def add_users(mda: Run, *users: str) -> None:
    mda("db", "upgrade", check=True)
    for user in users:
        mda("user", "add", user, check=True)


def stored_copy(mda: Run, user: str) -> bytes:
    """The one message stored for `user`, as `mda message show` prints it."""
    (stored,) = cli_json(mda, "message", "list", user)
    return mda("message", "show", user, stored["mailbox"], str(stored["uid"]),
               check=True).stdout


def server_peak_rss(server: ServerProcess) -> int:
    """The `mda serve` process's peak resident memory so far, in bytes (Linux)."""
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


async def test_lhlo_advertises_the_extensions(start_server) -> None:
    server = start_server(MDA_MAX_MESSAGE_SIZE="10M")
    client = await server.client(lhlo=False)
    reply = await client.lhlo()
    assert reply.lines[1:] == ("PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8",
                               "CHUNKING", f"SIZE {10 * 1024 * 1024}")
    await client.quit()


async def test_pipelined_bdat_chunks_are_stored_unaltered(mda: Run, start_server) -> None:
    add_users(mda, "bob@example.org", "carol@example.org")
    server = start_server()
    # No dot-unstuffing for BDAT: a "." line and leading dots are message text. (Line
    # endings are CRLF: the delivery layer turns bare LF and lone CR into CRLF either way.)
    message = (b"From: a@example.net\r\nSubject: chunks\r\n\r\n"
               b".\r\n..leading dots stay\r\nnul\x00 byte\r\n")
    client = await server.client()
    result = await client.bdat_transaction("a@example.net",
                                           ["bob@example.org", "carol@example.org"],
                                           split_chunks(message, 4))
    assert [r.status for r in result.chunks] == [S.DELIVERED] * 3
    assert [r.status for r in result.after_data] == [S.DELIVERED, S.DELIVERED]
    await client.quit()
    for user in ("bob@example.org", "carol@example.org"):
        shown = stored_copy(mda, user)
        assert shown.endswith(message)
        assert f"Delivered-To: {user}\r\n".encode() in shown
        assert b" (mda) with LMTP id " in shown


def big_message(size: int) -> bytes:
    """A MIME-looking message of exactly `size` octets: base64 lines of 76 characters."""
    head = b"From: a@example.net\r\nSubject: big\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    body_len = size - len(head)
    raw = base64.encodebytes(os.urandom(body_len * 3 // 4 + 3)).replace(b"\n", b"\r\n")
    body = raw[:body_len - 2] + b"\r\n"
    message = head + body
    assert len(message) == size
    return message


@pytest.mark.slow
async def test_50_mb_message_via_bdat_and_via_data(mda: Run, start_server,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Postfix's lmtp client sends BDAT when CHUNKING is advertised; both paths must carry a
    message as big as the default limit allows, byte for byte."""
    add_users(mda, "bob@example.org")
    server = start_server(MDA_MAX_MESSAGE_SIZE="51M")
    message = big_message(50 * 1000 * 1000)
    digest = hashlib.sha256(message).hexdigest()

    client = await server.client()
    started = time.monotonic()
    result = await client.bdat_transaction("a@example.net", ["bob@example.org"],
                                           split_chunks(message, 7), timeout=300)
    bdat_seconds = time.monotonic() - started
    assert [r.status for r in result.chunks] == [S.DELIVERED] * 6
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    bdat_rss = server_peak_rss(server)

    started = time.monotonic()
    result = await client.transaction("a@example.net", ["bob@example.org"], message,
                                      timeout=300)
    data_seconds = time.monotonic() - started
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    await client.quit()

    copies = cli_json(mda, "message", "list", "bob@example.org")
    assert len(copies) == 2
    for stored in copies:
        shown = mda("message", "show", "bob@example.org", "INBOX", str(stored["uid"]),
                    check=True).stdout
        assert hashlib.sha256(shown[-len(message):]).hexdigest() == digest
        assert stored["size"] == len(shown)
    with capsys.disabled():
        print(f"\n50 MB: BDAT (7 chunks) {bdat_seconds:.1f} s, DATA {data_seconds:.1f} s, "
              f"server peak RSS after BDAT {bdat_rss / 2**20:.0f} MiB, after DATA "
              f"{server_peak_rss(server) / 2**20:.0f} MiB")


async def test_smtputf8_delivery_to_a_utf8_address(mda: Run, start_server) -> None:
    add_users(mda, UTF8_USER)
    server = start_server()
    message = ("From: Zo\u00eb <zo\u00eb@b\u00fccher.example>\r\n"
               f"To: {UTF8_USER}\r\n"
               "Subject: gr\u00fc\u00dfe aus K\u00f6ln\r\n\r\n"
               "\u00e9t\u00e9 \u20ac\r\n").encode()
    client = await server.client()
    refused = await client.transaction("a@example.net", [UTF8_USER], message)
    assert [r.status for r in refused.rcpt] == [S.NOT_ASCII_WITHOUT_SMTPUTF8]
    assert (await client.command("RSET")).status == S.RESET_OK
    # The domain in another case is the same user (domains are case-insensitive).
    result = await client.transaction("zo\u00eb@b\u00fccher.example",
                                      ["j\u00f6rg@EX\u00c4MPLE.test"], message,
                                      mail_params="SMTPUTF8 BODY=8BITMIME")
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    await client.quit()
    (stored,) = cli_json(mda, "message", "list", UTF8_USER)
    assert stored["subject"] == "gr\u00fc\u00dfe aus K\u00f6ln"
    shown = stored_copy(mda, UTF8_USER)
    assert shown.endswith(message)  # header text in UTF-8, stored as is
    assert shown.startswith("Return-Path: <zo\u00eb@b\u00fccher.example>\r\n"
                            "Delivered-To: j\u00f6rg@EX\u00c4MPLE.test\r\n".encode())
    assert b" (mda) with UTF8LMTP id " in shown  # RFC 6531 §3.7.3
    server.wait_for_log(r"rcpt=<j\u00f6rg@EX\u00c4MPLE\.test> result=stored")


async def test_same_recipient_twice_is_stored_once_and_answered_twice(
        mda: Run, start_server) -> None:
    add_users(mda, "bob@example.org", "carol@example.org")
    server = start_server()
    client = await server.client()
    result = await client.transaction(
        "a@example.net", ["bob@example.org", "carol@example.org", "bob@EXAMPLE.org"], MESSAGE)
    assert [r.status for r in result.rcpt] == [S.RCPT_OK] * 3
    assert [r.status for r in result.after_data] == [S.DELIVERED] * 3
    await client.quit()
    assert len(cli_json(mda, "message", "list", "bob@example.org")) == 1
    assert cli_json(mda, "quota", "show", "bob@example.org")["messages_used"] == 1
    assert len(cli_json(mda, "message", "list", "carol@example.org")) == 1
    server.wait_for_log(r"rcpt=<bob@EXAMPLE\.org> result=duplicate .*reply=\"250 2\.0\.0\"")


async def test_starttls_through_mda_serve(mda: Run, start_server, tmp_path: Path) -> None:
    add_users(mda, "bob@example.org")
    directory = tmp_path / "pki"
    directory.mkdir()
    pki = make_test_pki(directory)
    server = start_server(**pki.server_settings())
    client = await server.client(lhlo=False)
    assert "STARTTLS" in (await client.lhlo()).lines
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    assert (await client.starttls(context, "localhost")).code == 220
    assert "STARTTLS" not in (await client.lhlo()).lines
    await client.send(b"MAIL FROM:<a@example.net>\r\nRCPT TO:<bob@example.org>\r\n"
                      + bdat_chunk(MESSAGE, last=True))
    assert [r.status for r in await client.read_replies(3)] == [S.SENDER_OK, S.RCPT_OK,
                                                                S.DELIVERED]
    await client.quit()
    shown = stored_copy(mda, "bob@example.org")
    assert shown.endswith(MESSAGE)
    assert b" (mda) with LMTPS id " in shown  # RFC 3848 §2


def test_unreadable_certificate_is_a_one_line_startup_error(mda: Run, mda_env, tmp_path: Path
                                                            ) -> None:
    add_users(mda)
    missing = tmp_path / "missing.pem"
    env = dict(mda_env, MDA_TLS_CERT=str(missing), MDA_TLS_KEY=str(missing),
               MDA_LMTP_LISTEN="127.0.0.1:0", MDA_MANAGESIEVE_LISTEN="")
    proc = mda("serve", env=env)
    assert proc.returncode != 0
    lines = proc.stderr.decode().strip().splitlines()
    assert lines[-1].startswith("mda: error: "), lines
    assert str(missing) in lines[-1] and "Traceback" not in proc.stderr.decode()
