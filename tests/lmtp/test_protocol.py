"""LMTP protocol behaviour (RFC 2033) against a real listener, in raw bytes.

Every test talks to a real socket; replies are compared by named status constants
(`tests/lmtp/statuscodes.py`). After DATA a test reads exactly one reply per accepted
recipient and then checks with NOOP that no extra reply line follows.
"""

from __future__ import annotations

import asyncio
from datetime import timezone

import pytest

from mda.lmtp import MAX_RECIPIENTS
from tests.lmtp import statuscodes as S
from tests.lmtp.client import LMTPClient, dot_stuff
from tests.lmtp.conftest import MAX_SIZE, Listener

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


async def assert_no_extra_reply(client: LMTPClient) -> None:
    """The next reply must be NOOP's: nothing else was left unread on the connection."""
    reply = await client.command("NOOP")
    assert reply.status == "250 2.0.0" and reply.text.endswith("OK"), reply


async def test_greeting_and_lhlo_capabilities(listener: Listener) -> None:
    client = await listener.client(lhlo=False)
    await client.send(b"LHLO mta.example\r\n")
    reply = await client.read_reply()
    assert reply.code == 250
    assert reply.lines == ("mx.test", "PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME",
                           "SMTPUTF8", "CHUNKING", f"SIZE {MAX_SIZE}")


@pytest.mark.parametrize("command", [b"HELO mta.example", b"EHLO mta.example"])
async def test_helo_and_ehlo_are_not_lmtp(listener: Listener, command: bytes) -> None:
    client = await listener.client(lhlo=False)
    reply = await client.command(command)
    assert reply.status == S.UNKNOWN_COMMAND


async def test_mail_before_lhlo_is_refused(listener: Listener) -> None:
    client = await listener.client(lhlo=False)
    reply = await client.command("MAIL FROM:<a@example.org>")
    assert reply.status == S.BAD_SEQUENCE


async def test_pipelined_transaction_one_reply_per_recipient(listener: Listener) -> None:
    client = await listener.client()
    await client.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.org>\r\n"
                      b"RCPT TO:<carol@example.org>\r\nDATA\r\n")
    assert (await client.read_reply()).status == S.SENDER_OK
    assert [r.status for r in await client.read_replies(2)] == [S.RCPT_OK, S.RCPT_OK]
    assert (await client.read_reply()).code == S.START_DATA
    await client.send(dot_stuff(MESSAGE))
    after = await client.read_replies(2)
    assert [r.status for r in after] == [S.DELIVERED, S.DELIVERED]
    assert "<bob@example.org>" in after[0].text and "<carol@example.org>" in after[1].text
    await assert_no_extra_reply(client)
    (transaction,) = listener.deliverer.transactions
    assert transaction.recipients == ("bob@example.org", "carol@example.org")
    assert transaction.mail_from == "a@example.org"
    assert transaction.data == MESSAGE
    assert transaction.helo == "client.example"
    assert transaction.peer.startswith("127.0.0.1:")
    assert transaction.received_at.tzinfo is not None
    assert transaction.received_at.utcoffset() == timezone.utc.utcoffset(None)
    assert transaction.queue_id


async def test_replies_follow_rcpt_order_across_outcomes(listener: Listener) -> None:
    client = await listener.client()
    result = await client.transaction(
        "a@example.org",
        ["reject1@example.org", "unknown@example.org", "ok@example.org", "quota1@example.org",
         "full@example.org", "ok2@example.org"],
        MESSAGE)
    assert [r.status for r in result.rcpt] == [S.RCPT_OK, S.UNKNOWN_USER, S.RCPT_OK,
                                               S.RCPT_OK, S.OVER_QUOTA, S.RCPT_OK]
    assert [r.status for r in result.after_data] == [S.SIEVE_REJECT, S.DELIVERED,
                                                     S.OVER_QUOTA, S.DELIVERED]
    assert result.after_data[0].text == "5.7.1 <reject1@example.org> go away"
    await assert_no_extra_reply(client)
    assert listener.deliverer.transactions[0].recipients == (
        "reject1@example.org", "ok@example.org", "quota1@example.org", "ok2@example.org")


async def test_data_without_accepted_rcpt_fails_with_503(listener: Listener) -> None:
    client = await listener.client()
    result = await client.transaction("a@example.org", ["unknown@example.org"], MESSAGE)
    assert result.data is not None and result.data.status == S.NEED_RCPT
    assert listener.deliverer.transactions == []
    await assert_no_extra_reply(client)


async def test_null_sender(listener: Listener) -> None:
    client = await listener.client()
    result = await client.transaction("", ["bob@example.org"], MESSAGE)
    assert result.mail.status == S.SENDER_OK
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].mail_from == ""


async def test_duplicate_recipient_gets_two_replies_and_one_delivery(
        listener: Listener, caplog: pytest.LogCaptureFixture) -> None:
    client = await listener.client()
    with caplog.at_level("INFO", logger="mda.lmtp"):
        result = await client.transaction("a@example.org", ["bob@example.org"] * 2, MESSAGE)
    assert [r.status for r in result.rcpt] == [S.RCPT_OK, S.RCPT_OK]
    assert [r.status for r in result.after_data] == [S.DELIVERED, S.DELIVERED]
    await assert_no_extra_reply(client)
    (transaction,) = listener.deliverer.transactions
    assert transaction.recipients == ("bob@example.org",)
    lines = [r.getMessage() for r in caplog.records if "rcpt=<bob@" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "result=stored" in lines[0] and "result=duplicate" in lines[1], lines


async def test_duplicates_are_answered_in_rcpt_order_with_their_first_outcome(
        listener: Listener) -> None:
    """The domain is case-insensitive, the local part is not (RFC 5321 §2.4)."""
    client = await listener.client()
    rcpts = ["reject1@example.org", "bob@example.org", "reject1@EXAMPLE.org",
             "Bob@example.org", "bob@Example.Org", "quota1@example.org"]
    result = await client.transaction("a@example.org", rcpts, MESSAGE)
    assert [r.status for r in result.after_data] == [
        S.SIEVE_REJECT, S.DELIVERED, S.SIEVE_REJECT, S.DELIVERED, S.DELIVERED, S.OVER_QUOTA]
    await assert_no_extra_reply(client)
    (transaction,) = listener.deliverer.transactions
    assert transaction.recipients == ("reject1@example.org", "bob@example.org",
                                      "Bob@example.org", "quota1@example.org")


async def test_duplicate_of_a_recipient_without_outcome_gets_451_too(
        listener: Listener) -> None:
    client = await listener.client()
    result = await client.transaction(
        "a@example.org", ["short@example.org", "reject@example.org", "reject@example.org"],
        MESSAGE)
    assert [r.status for r in result.after_data] == [S.DELIVERED, S.TEMP_FAILURE,
                                                     S.TEMP_FAILURE]
    await assert_no_extra_reply(client)


def message_of_size(size: int) -> bytes:
    """A message of exactly `size` bytes (CRLF line endings, short lines)."""
    head = b"Subject: size\r\n\r\n"
    body_len = size - len(head)
    lines, rest = divmod(body_len, 100)
    body = (b"x" * 98 + b"\r\n") * lines + (b"y" * (rest - 2) + b"\r\n" if rest >= 2 else b"")
    message = head + body
    if len(message) < size:  # rest == 1
        message = head + b"z" + body
    assert len(message) == size
    return message


async def test_message_at_the_limit_is_delivered(listener: Listener) -> None:
    client = await listener.client()
    message = message_of_size(MAX_SIZE)
    result = await client.transaction("a@example.org", ["bob@example.org"], message)
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == message


async def test_one_byte_over_the_limit_gets_552_for_every_recipient(listener: Listener) -> None:
    client = await listener.client()
    rcpts = ["bob@example.org", "carol@example.org", "dave@example.org"]
    result = await client.transaction("a@example.org", rcpts, message_of_size(MAX_SIZE + 1))
    assert [r.status for r in result.after_data] == [S.TOO_BIG] * 3
    for rcpt, reply in zip(rcpts, result.after_data):
        assert f"<{rcpt}>" in reply.text
    await assert_no_extra_reply(client)
    assert listener.deliverer.transactions == []
    # The connection stays in sync: the next transaction works.
    again = await client.transaction("a@example.org", ["bob@example.org"], MESSAGE)
    assert [r.status for r in again.after_data] == [S.DELIVERED]


async def test_dot_stuffing_does_not_count_towards_the_limit(listener: Listener) -> None:
    client = await listener.client()
    message = message_of_size(MAX_SIZE)
    head = b"Subject: size\r\n\r\n"
    message = head + b"." + message[len(head) + 1:]  # the body now starts with a dot
    assert len(message) == MAX_SIZE and b"\r\n." in message
    result = await client.transaction("a@example.org", ["bob@example.org"], message)
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == message


@pytest.mark.parametrize("declared,expected", [(MAX_SIZE, S.SENDER_OK),
                                               (MAX_SIZE + 1, S.TOO_BIG)])
async def test_mail_size_parameter(listener: Listener, declared: int, expected: str) -> None:
    client = await listener.client()
    reply = await client.command(f"MAIL FROM:<a@example.org> SIZE={declared}")
    assert reply.status == expected


async def test_exception_in_delivery_gives_451_per_recipient_without_details(
        listener: Listener, caplog: pytest.LogCaptureFixture) -> None:
    client = await listener.client()
    result = await client.transaction(
        "a@example.org", ["ok@example.org", "boom@example.org", "x@example.org"], MESSAGE)
    assert [r.status for r in result.after_data] == [S.TEMP_FAILURE] * 3
    assert all("secret" not in r.text and "RuntimeError" not in r.text
               for r in result.after_data)
    assert "secret internal detail" in caplog.text  # the traceback went to the log
    await assert_no_extra_reply(client)


async def test_missing_outcome_gets_451_for_that_recipient_only(listener: Listener) -> None:
    client = await listener.client()
    result = await client.transaction(
        "a@example.org", ["short@example.org", "reject@example.org"], MESSAGE)
    assert [r.status for r in result.after_data] == [S.DELIVERED, S.TEMP_FAILURE]
    await assert_no_extra_reply(client)


async def test_exception_at_rcpt_gives_451_without_details(listener: Listener) -> None:
    client = await listener.client()
    result = await client.transaction("a@example.org",
                                      ["rcptboom@example.org", "ok@example.org"], MESSAGE)
    assert [r.status for r in result.rcpt] == [S.TEMP_FAILURE, S.RCPT_OK]
    assert "secret" not in result.rcpt[0].text
    assert [r.status for r in result.after_data] == [S.DELIVERED]


@pytest.mark.parametrize("line,expected", [
    (b"RCPT TO:<b@example.org>", S.BAD_SEQUENCE),   # no MAIL yet
    (b"MAIL FROM:<a@>", "553 5.1.3"),   # aiosmtpd's address parser raises IndexError here
    (b"MAIL FROM:<a@example.org> BODY=9BIT", S.SYNTAX_ERROR),
    (b"RSET", S.RESET_OK),
    (b"NOOP", "250 2.0.0"),
    (b"QUIT", S.CLOSING),
])
async def test_aiosmtpd_replies_carry_enhanced_codes(listener: Listener, line: bytes,
                                                     expected: str) -> None:
    client = await listener.client()
    reply = await client.command(line)
    assert reply.status == expected, reply


# --- MAIL and RCPT paths (RFC 5321 §4.1.2) -----------------------------------------------

@pytest.mark.parametrize("sender", [b'"a\rb"@b.example', b"a\rb@b.example", b"a\x01b@b.example",
                                    b"a\x00b@b.example", b"a\tb@b.example", b"a\x7fb@b.example",
                                    b'"a\\\rb"@b.example'])
async def test_control_character_in_sender_is_refused_and_leaves_no_state(
        listener: Listener, sender: bytes) -> None:
    client = await listener.client()
    await client.send(b"MAIL FROM:<" + sender + b">\r\n")
    raw = await client.reader.readline()
    assert raw.startswith(b"501 5.1.7 ") and raw.endswith(b"\r\n"), raw
    assert not any(byte < 32 and byte not in (13, 10) for byte in raw), raw
    assert b"\r" not in raw[:-2]
    # Nothing was set: the next MAIL is not "nested", and the transaction has its sender.
    result = await client.transaction("good@example.org", ["bob@example.org"], MESSAGE)
    assert result.mail.status == S.SENDER_OK
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    (transaction,) = listener.deliverer.transactions
    assert transaction.mail_from == "good@example.org"


@pytest.mark.parametrize("rcpt", [b"b\rob@example.org", b'"b\x1bob"@example.org',
                                  b"bob\x00@example.org", b""])
async def test_bad_recipient_path_is_refused_with_501_5_1_3(listener: Listener,
                                                           rcpt: bytes) -> None:
    client = await listener.client()
    assert (await client.command("MAIL FROM:<a@example.org>")).status == S.SENDER_OK
    await client.send(b"RCPT TO:<" + rcpt + b">\r\n")
    raw = await client.reader.readline()
    assert raw.startswith(b"501 5.1.3 "), raw
    assert b"\r" not in raw[:-2] and b"\x00" not in raw
    assert listener.deliverer.checked == []
    assert (await client.command("DATA")).status == S.NEED_RCPT


@pytest.mark.parametrize("line", [b"MAIL FROM:a@example.org", b"MAIL FROM:<a@example.org",
                                  b"MAIL FROM: a@example.org SIZE=10"])
async def test_sender_without_angle_brackets_is_a_syntax_error(listener: Listener,
                                                               line: bytes) -> None:
    client = await listener.client()
    assert (await client.command(line)).status == S.SYNTAX_ERROR
    assert (await client.command("MAIL FROM:<a@example.org>")).status == S.SENDER_OK


@pytest.mark.parametrize("line", [b"RCPT TO:bob@example.org", b"RCPT TO:<bob@example.org"])
async def test_recipient_without_angle_brackets_is_a_syntax_error(listener: Listener,
                                                                  line: bytes) -> None:
    client = await listener.client()
    assert (await client.command("MAIL FROM:<a@example.org>")).status == S.SENDER_OK
    assert (await client.command(line)).status == S.SYNTAX_ERROR
    assert listener.deliverer.checked == []


async def test_quoted_local_part_with_bracket_is_accepted(listener: Listener) -> None:
    client = await listener.client()
    assert (await client.command('MAIL FROM:<"a>b"@example.org>')).status == S.SENDER_OK


async def test_mail_before_lhlo_says_send_lhlo_first(listener: Listener) -> None:
    client = await listener.client(lhlo=False)
    reply = await client.command("MAIL FROM:<a@example.org>")
    assert reply.status == S.BAD_SEQUENCE and reply.text == "5.5.1 Send LHLO first", reply


# --- hostile input -------------------------------------------------------------------------

async def send_raw_data(listener: Listener, raw: bytes) -> list[str]:
    """One transaction for bob whose DATA part is `raw` exactly (terminator included)."""
    client = await listener.client()
    await client.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
    statuses = [(await client.read_reply()).status for _ in range(2)]
    assert statuses == [S.SENDER_OK, S.RCPT_OK]
    assert (await client.read_reply()).code == S.START_DATA
    await client.send(raw)
    after = [(await client.read_reply()).status]
    await assert_no_extra_reply(client)
    return after


async def test_bare_lf_message_is_delivered_as_received(listener: Listener) -> None:
    message = b"From: a@example.org\nSubject: lf\n\n" + b"line of text\n" * 200
    assert await send_raw_data(listener, message + b"\r\n.\r\n") == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == message + b"\r\n"


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r.\r"])
async def test_smuggled_end_of_data_is_message_text(listener: Listener, fake_end: bytes) -> None:
    smuggled = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nevil\r\n"
    raw = b"Subject: smuggle\r\n\r\nbefore" + fake_end + smuggled + b".\r\n"
    assert await send_raw_data(listener, raw) == [S.DELIVERED]
    (transaction,) = listener.deliverer.transactions
    # Only a line that follows CRLF can be dot-stuffed; "\r\n.\n" loses its dot.
    assert transaction.data == raw[:-3].replace(b"\r\n.\n", b"\r\n\n")
    assert transaction.mail_from == "a@example.org"


async def test_lone_cr_is_kept(listener: Listener) -> None:
    raw = b"Subject: cr\r\n\r\na\rb\r\n.\r\n"
    assert await send_raw_data(listener, raw) == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == b"Subject: cr\r\n\r\na\rb\r\n"


async def test_dot_unstuffing(listener: Listener) -> None:
    raw = b"Subject: dots\r\n\r\n..\r\n...x\r\n.y\r\na.b\r\n.\r\n"
    assert await send_raw_data(listener, raw) == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == (
        b"Subject: dots\r\n\r\n.\r\n..x\r\ny\r\na.b\r\n")


@pytest.mark.parametrize("message", [
    pytest.param(b"Subject: nul\x00here\r\n\r\nbody\x00\x00\r\n", id="nul-bytes"),
    pytest.param(b"just a body, no headers at all\r\n", id="no-headers"),
    pytest.param(b"\r\n\r\n", id="empty-lines"),
    pytest.param("Subject: caf\u00e9 \u00fcber\r\nFrom: J\u00f6rg <j@example.org>\r\n\r\n"
                 "b\u00f6dy\r\n".encode("utf-8"), id="8bit-utf8-headers"),
    pytest.param(b"Subject: \xff\xfe latin junk\r\n\r\n\xe9t\xe9\r\n", id="8bit-invalid-utf8"),
    pytest.param(b"Subject: long\r\n\r\n" + b"x" * 3000 + b"\r\n", id="line-over-1000"),
])
async def test_hostile_messages_are_delivered_intact(listener: Listener, message: bytes) -> None:
    client = await listener.client()
    result = await client.transaction("a@example.org", ["bob@example.org"], message)
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == message
    await assert_no_extra_reply(client)


async def test_client_disconnect_mid_data_delivers_nothing(listener: Listener) -> None:
    client = await listener.client()
    await client.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n")
    await client.read_replies(3)
    await client.send(b"Subject: cut\r\n\r\npartial")
    await client.close()
    await asyncio.sleep(0.2)
    assert listener.deliverer.transactions == []
    # The server is still fine.
    other = await listener.client()
    result = await other.transaction("a@example.org", ["bob@example.org"], MESSAGE)
    assert [r.status for r in result.after_data] == [S.DELIVERED]


# --- graceful shutdown -------------------------------------------------------------------

async def start_data(client: LMTPClient, *rcpts: str) -> None:
    """MAIL, RCPT for each of `rcpts` and DATA, pipelined; every reply must be positive."""
    await client.send(b"MAIL FROM:<a@example.org>\r\n"
                      + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
                      + b"DATA\r\n")
    statuses = [r.status for r in await client.read_replies(1 + len(rcpts))]
    assert statuses == [S.SENDER_OK] + [S.RCPT_OK] * len(rcpts)
    assert (await client.read_reply()).code == S.START_DATA


async def test_drain_closes_idle_connections_with_421(listener: Listener) -> None:
    client = await listener.client()
    listener.registry.drain()
    reply = await client.read_reply()
    assert reply.status == S.SHUTTING_DOWN
    assert await client.reader.read() == b""
    assert await listener.registry.wait_idle(5)


async def test_drain_lets_a_transaction_in_flight_finish(listener: Listener) -> None:
    listener.deliverer.delay = 0.5
    client = await listener.client()
    await start_data(client, "bob@example.org")
    await client.send(b"Subject: late\r\n\r\n")
    listener.registry.drain()
    await asyncio.sleep(0.1)
    await client.send(b"rest of it\r\n.\r\n")
    assert (await client.read_reply()).status == S.DELIVERED
    assert (await client.read_reply()).status == S.SHUTTING_DOWN
    assert await listener.registry.wait_idle(5)
    assert len(listener.deliverer.transactions) == 1


async def test_cut_off_closes_a_connection_still_receiving_data_with_421(
        listener: Listener) -> None:
    client = await listener.client()
    await start_data(client, "bob@example.org")
    await client.send(b"Subject: half\r\n\r\n")
    listener.registry.drain()
    await asyncio.sleep(0.1)
    listener.registry.cut_off()
    assert (await client.read_reply()).status == S.SHUTTING_DOWN
    assert await client.reader.read() == b""
    assert await listener.registry.wait_idle(5)
    assert listener.deliverer.transactions == []


async def test_cut_off_never_cancels_a_started_delivery(listener: Listener) -> None:
    """Once the final "." is in, the delivery runs to its end and every recipient is
    answered, however long it takes (RFC 2033 §4.2; cancelling would lose the 250s)."""
    listener.deliverer.delay = 1.0
    client = await listener.client()
    await start_data(client, "bob@example.org", "carol@example.org")
    await client.send(dot_stuff(MESSAGE))
    await asyncio.sleep(0.2)
    listener.registry.drain()
    listener.registry.cut_off()
    assert [r.status for r in await client.read_replies(2)] == [S.DELIVERED] * 2
    assert (await client.read_reply()).status == S.SHUTTING_DOWN
    assert await listener.registry.wait_idle(5)


async def test_a_started_delivery_is_logged_even_when_the_client_goes_away(
        listener: Listener, caplog: pytest.LogCaptureFixture) -> None:
    listener.deliverer.delay = 0.5
    client = await listener.client()
    await start_data(client, "bob@example.org")
    await client.send(dot_stuff(MESSAGE))
    await asyncio.sleep(0.1)
    await client.close()
    with caplog.at_level("INFO", logger="mda.lmtp"):
        assert await listener.registry.wait_idle(5)
    assert any("rcpt=<bob@example.org> result=stored" in r.getMessage()
               for r in caplog.records), caplog.text


async def test_replies_never_echo_control_characters(listener: Listener) -> None:
    client = await listener.client()
    await client.send(b"X\x00Y\x01Z\rW arg\r\n")  # aiosmtpd echoes unknown verbs
    raw = await client.reader.readline()
    assert raw.endswith(b"\r\n") and raw[:3].isdigit(), raw
    assert not any(byte < 32 for byte in raw[:-2]), raw


async def test_recipient_limit_at_n_and_n_plus_one(listener: Listener) -> None:
    """RFC 5321 §4.5.3.1.10: beyond the limit, 452 4.5.3; the accepted ones are delivered."""
    client = await listener.client()
    rcpts = [f"r{i}@example.org" for i in range(MAX_RECIPIENTS + 1)]
    result = await client.transaction("a@example.org", rcpts, MESSAGE)
    statuses = [r.status for r in result.rcpt]
    assert statuses == [S.RCPT_OK] * MAX_RECIPIENTS + ["452 4.5.3"]
    assert len(result.after_data) == MAX_RECIPIENTS
    (transaction,) = listener.deliverer.transactions
    assert transaction.recipients == tuple(rcpts[:MAX_RECIPIENTS])


async def test_rcpt_refusals_are_logged_with_the_transaction_queue_id(
        listener: Listener, caplog: pytest.LogCaptureFixture) -> None:
    client = await listener.client()
    with caplog.at_level("INFO", logger="mda.lmtp"):
        result = await client.transaction(
            "a@example.org", ["unknown@example.org", "full@example.org",
                              "rcptboom@example.org", "ok@example.org"], MESSAGE)
    assert [r.status for r in result.rcpt] == [S.UNKNOWN_USER, S.OVER_QUOTA, S.TEMP_FAILURE,
                                               S.RCPT_OK]
    lines = [r.getMessage() for r in caplog.records if "rcpt=<" in r.getMessage()
             and "internal error" not in r.getMessage()]
    expected = [("unknown@example.org", "unknown_user", "550 5.1.1"),
                ("full@example.org", "over_quota", "552 5.2.2"),
                ("rcptboom@example.org", "error", "451 4.3.0"),
                ("ok@example.org", "stored", "250 2.0.0")]
    assert len(lines) == len(expected), lines
    queue_ids = {line.split(":", 1)[0] for line in lines}
    assert len(queue_ids) == 1, lines
    for line, (rcpt, what, reply) in zip(lines, expected):
        assert f"rcpt=<{rcpt}> result={what} " in line and f'reply="{reply}"' in line, line


async def test_help_lists_the_lmtp_commands_and_not_auth(listener: Listener) -> None:
    client = await listener.client()
    reply = await client.command("HELP")
    assert reply.status == "250 2.0.0", reply
    listed = reply.text.split("Supported commands:", 1)[1].split()
    assert listed == sorted(["BDAT", "DATA", "HELP", "LHLO", "MAIL", "NOOP", "QUIT", "RCPT",
                             "RSET", "VRFY"])
    assert (await client.command("AUTH PLAIN")).status == "502 5.5.1"


async def test_vrfy_cannot_verify_but_will_attempt_delivery(listener: Listener) -> None:
    client = await listener.client()
    reply = await client.command("VRFY bob@example.org")
    assert reply.status == "252 2.5.0"
    assert reply.text == ("2.5.0 Cannot VRFY user, but will accept message and attempt "
                          "delivery")
    assert listener.deliverer.checked == []
