"""STARTTLS on LMTP (RFC 3207) against a real listener with a certificate made for the test.

The client trusts only the test CA and checks the name, so a passing handshake proves the
listener presented the configured certificate."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mda.lmtp import ConnectionRegistry, DeliveryHandler
from mda.server import ListenAddress, ListenError, start_listener
from tests.lmtp import statuscodes as S
from tests.lmtp.conftest import (
    MAX_SIZE,
    Listener,
    RecordingDeliverer,
    listener_settings,
    open_listener,
)
from tests.lmtp.test_protocol import MESSAGE, assert_no_extra_reply
from tests.managesieve.tls import TestPKI, make_test_pki


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_test_pki(directory)


@pytest.fixture
async def tls_listener(tmp_path: Path, pki: TestPKI) -> AsyncIterator[Listener]:
    settings = listener_settings(tmp_path, tls_cert=pki.cert_file, tls_key=pki.key_file)
    async with open_listener(settings) as running:
        yield running


def client_context(pki: TestPKI) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_file))


async def test_starttls_then_a_transaction(tls_listener: Listener, pki: TestPKI) -> None:
    client = await tls_listener.client(lhlo=False)
    before = await client.lhlo()
    assert before.lines[-1] == "STARTTLS"
    reply = await client.starttls(client_context(pki), "localhost")
    assert reply.code == 220
    tls = client.writer.get_extra_info("ssl_object")
    assert tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3")
    # RFC 3207 §4.2: the server forgot the LHLO; after the new one, no STARTTLS is offered.
    assert (await client.command("MAIL FROM:<a@example.org>")).text == "5.5.1 Send LHLO first"
    after = await client.lhlo()
    assert "STARTTLS" not in after.lines and "CHUNKING" in after.lines
    result = await client.transaction("a@example.org", ["bob@example.org"], MESSAGE)
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert tls_listener.deliverer.transactions[0].data == MESSAGE
    assert (await client.command("STARTTLS")).status == S.BAD_SEQUENCE  # already active
    await assert_no_extra_reply(client)


async def test_plaintext_pipelined_behind_starttls_is_discarded(tls_listener: Listener,
                                                                pki: TestPKI) -> None:
    """RFC 3207 §4.2 / CVE-2011-0411: commands sent in the clear after STARTTLS must not
    run inside the TLS session."""
    client = await tls_listener.client()
    await client.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
    assert (await client.read_reply()).code == 220
    await client.writer.start_tls(client_context(pki), server_hostname="localhost")
    await client.lhlo()
    assert (await client.command("MAIL FROM:<a@example.org>")).status == S.SENDER_OK
    await assert_no_extra_reply(client)


async def test_starttls_with_argument_is_refused(tls_listener: Listener) -> None:
    client = await tls_listener.client()
    assert (await client.command("STARTTLS now")).status == S.SYNTAX_ERROR
    await assert_no_extra_reply(client)


async def test_starttls_before_lhlo_is_refused(tls_listener: Listener) -> None:
    client = await tls_listener.client(lhlo=False)
    assert (await client.command("STARTTLS")).text == "5.5.1 Send LHLO first"


async def test_failed_handshake_closes_only_that_connection(tls_listener: Listener) -> None:
    client = await tls_listener.client()
    assert (await client.command("STARTTLS")).code == 220
    await client.send(b"this is not a TLS ClientHello\r\n")
    assert await asyncio.wait_for(client.reader.read(), 5) == b""
    other = await tls_listener.client()
    result = await other.transaction("a@example.org", ["bob@example.org"], MESSAGE)
    assert [r.status for r in result.after_data] == [S.DELIVERED]


async def test_without_a_certificate_starttls_is_neither_offered_nor_accepted(
        listener: Listener) -> None:
    client = await listener.client(lhlo=False)
    assert "STARTTLS" not in (await client.lhlo()).lines
    assert (await client.command("STARTTLS")).status == S.NOT_SUPPORTED
    assert "STARTTLS" not in (await client.command("HELP")).text
    await assert_no_extra_reply(client)


async def test_unreadable_key_is_a_listen_error(tmp_path: Path, pki: TestPKI) -> None:
    pki.key_file.write_text("not a key\n")
    settings = listener_settings(tmp_path, tls_cert=pki.cert_file, tls_key=pki.key_file)
    handler = DeliveryHandler(RecordingDeliverer(), MAX_SIZE)  # type: ignore[arg-type]
    with pytest.raises(ListenError, match="tls_key .* for LMTP STARTTLS"):
        await start_listener(ListenAddress(host="127.0.0.1", port=0), ConnectionRegistry(),
                             handler, settings)
