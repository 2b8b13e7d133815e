"""SMTPUTF8 (RFC 6531) against a real listener, in raw bytes: UTF-8 addresses only in a
transaction whose MAIL gave the SMTPUTF8 parameter, `553 5.6.7` otherwise (§3.5), and bytes
that are not UTF-8 refused as bad address syntax, never echoed raw."""

from __future__ import annotations

import pytest

from tests.lmtp import statuscodes as S
from tests.lmtp.conftest import Listener
from tests.lmtp.test_protocol import MESSAGE, assert_no_extra_reply

SENDER = "j\u00f6rg@ex\u00e4mple.test"
RECIPIENT = "\u00fcnic\u00f8de@b\u00fccher.example"
UTF8_MESSAGE = ("From: J\u00f6rg <j\u00f6rg@ex\u00e4mple.test>\r\n"
                "To: \u00fcnic\u00f8de@b\u00fccher.example\r\n"
                "Subject: \u65e5\u672c\u8a9e \u0440\u0443\u0441\u0441\u043a\u0438\u0439\r\n"
                "\r\nbody \u20ac\r\n").encode()


async def test_utf8_addresses_with_smtputf8(listener: Listener) -> None:
    client = await listener.client()
    result = await client.transaction(SENDER, [RECIPIENT, "ascii@example.org"], UTF8_MESSAGE,
                                      mail_params="SMTPUTF8")
    assert result.mail.status == S.SENDER_OK
    assert [r.status for r in result.rcpt] == [S.RCPT_OK, S.RCPT_OK]
    assert result.rcpt[0].text == f"2.1.5 <{RECIPIENT}> OK"  # UTF-8 reply text, §3.7.4.2
    assert [r.status for r in result.after_data] == [S.DELIVERED, S.DELIVERED]
    (transaction,) = listener.deliverer.transactions
    assert transaction.mail_from == SENDER
    assert transaction.recipients == (RECIPIENT, "ascii@example.org")
    assert transaction.data == UTF8_MESSAGE  # header text in UTF-8, stored as is


async def test_smtputf8_with_body_8bitmime_and_bdat(listener: Listener) -> None:
    client = await listener.client()
    result = await client.bdat_transaction(SENDER, [RECIPIENT], [UTF8_MESSAGE[:11],
                                                                UTF8_MESSAGE[11:]],
                                           mail_params="smtputf8 BODY=8BITMIME")
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == UTF8_MESSAGE


async def test_non_ascii_sender_without_smtputf8_is_553_5_6_7(listener: Listener) -> None:
    client = await listener.client()
    reply = await client.command(f"MAIL FROM:<{SENDER}>".encode())
    assert reply.status == S.NOT_ASCII_WITHOUT_SMTPUTF8
    assert reply.text.isascii()  # the address is not echoed
    assert (await client.command("MAIL FROM:<a@example.org>")).status == S.SENDER_OK


async def test_non_ascii_recipient_without_smtputf8_is_553_5_6_7(listener: Listener) -> None:
    client = await listener.client()
    result = await client.transaction("a@example.org", [RECIPIENT, "bob@example.org"],
                                      MESSAGE)
    assert [r.status for r in result.rcpt] == [S.NOT_ASCII_WITHOUT_SMTPUTF8, S.RCPT_OK]
    assert listener.deliverer.checked == ["bob@example.org"]
    assert listener.deliverer.transactions[0].recipients == ("bob@example.org",)


async def test_smtputf8_does_not_outlive_its_transaction(listener: Listener) -> None:
    client = await listener.client()
    first = await client.transaction(SENDER, [RECIPIENT], MESSAGE, mail_params="SMTPUTF8")
    assert [r.status for r in first.after_data] == [S.DELIVERED]
    second = await client.transaction("a@example.org", [RECIPIENT], MESSAGE)
    assert [r.status for r in second.rcpt] == [S.NOT_ASCII_WITHOUT_SMTPUTF8]


@pytest.mark.parametrize("line,expected", [
    (b"MAIL FROM:<j\xf6rg@example.org> SMTPUTF8", S.BAD_SENDER),   # Latin-1, not UTF-8
    (b"MAIL FROM:<j\xc3rg@example.org> SMTPUTF8", S.BAD_SENDER),   # truncated sequence
    (b"MAIL FROM:<\xed\xa0\x80@example.org> SMTPUTF8", S.BAD_SENDER),  # encoded surrogate
])
async def test_sender_that_is_not_utf8_is_refused(listener: Listener, line: bytes,
                                                  expected: str) -> None:
    client = await listener.client()
    await client.send(line + b"\r\n")
    raw = await client.reader.readline()
    assert raw.startswith(expected.encode() + b" "), raw
    raw.decode("utf-8")  # whatever we answer is valid UTF-8
    assert (await client.command("MAIL FROM:<a@example.org>")).status == S.SENDER_OK


async def test_recipient_that_is_not_utf8_is_refused(listener: Listener) -> None:
    client = await listener.client()
    assert (await client.command(f"MAIL FROM:<{SENDER}> SMTPUTF8".encode())).status \
        == S.SENDER_OK
    await client.send(b"RCPT TO:<b\xfcb@example.org>\r\n")
    raw = await client.reader.readline()
    assert raw.startswith(S.BAD_RECIPIENT.encode() + b" "), raw
    assert listener.deliverer.checked == []


async def test_lhlo_name_must_be_ascii(listener: Listener) -> None:
    client = await listener.client(lhlo=False)
    reply = await client.command("LHLO b\u00fccher.example".encode())
    assert reply.status == S.SYNTAX_ERROR
    # Not greeted: mail commands still need LHLO.
    assert (await client.command("MAIL FROM:<a@example.org>")).text == "5.5.1 Send LHLO first"


@pytest.mark.parametrize("line", [b"MAIL FROM:<a@example.org> SIZE=1\xff0",
                                  b"MAIL FROM:<a@example.org> X\xc3=1",
                                  b"NOOP \xff\xfe", b"HELP \xe9"])
async def test_invalid_utf8_outside_paths_gets_a_clean_reply(listener: Listener,
                                                             line: bytes) -> None:
    client = await listener.client()
    await client.send(line + b"\r\n")
    raw = await client.reader.readline()
    assert raw[:1] in (b"2", b"5") and raw.endswith(b"\r\n"), raw
    raw.decode("utf-8")
    await assert_no_extra_reply(client)
