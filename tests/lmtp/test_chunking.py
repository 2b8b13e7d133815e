"""CHUNKING / BDAT (RFC 3030) against a real listener, in raw bytes.

BDAT chunks are counted in octets and never altered (no dot-stuffing, bare LF, lone CR and
NUL are text); after the LAST chunk there is one reply per accepted recipient, as after
DATA (RFC 2033 §4.2). A refused chunk is still read to its end so the connection stays in
sync; only a chunk size that cannot be read closes the connection.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mda.lmtp.chunking import BdatSyntaxError, ChunkedMessage, parse_bdat, skip_chunk
from tests.lmtp import statuscodes as S
from tests.lmtp.client import LMTPClient, bdat_chunk, split_chunks
from tests.lmtp.conftest import MAX_SIZE, Listener
from tests.lmtp.test_protocol import MESSAGE, assert_no_extra_reply, message_of_size

# MAIL and RCPT of a transaction for bob, pipelined (answered SENDER_OK, RCPT_OK).
ENVELOPE = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.org>\r\n"


async def exchange(client: LMTPClient, raw: bytes, count: int) -> list[str]:
    """Send `raw` in one write and return the statuses of the next `count` replies."""
    await client.send(raw)
    return [reply.status for reply in await client.read_replies(count)]


# Octets DATA would treat specially: a lone "." line, dot at line start, bare LF, lone CR,
# NUL, and a line that looks like a command.
AWKWARD = (b"Subject: chunks\r\n\r\n.\r\n..two dots\r\nbare\nlf\rcr\x00nul\r\n"
           b"MAIL FROM:<evil@example.org>\r\n.\r\n")


@pytest.mark.parametrize("arg,size,last", [("0", 0, False), ("10", 10, False),
                                           ("10 LAST", 10, True), ("0 last", 0, True),
                                           ("007  LAST", 7, True)])
def test_parse_bdat(arg: str, size: int, last: bool) -> None:
    command = parse_bdat(arg)
    assert (command.size, command.last) == (size, last)


@pytest.mark.parametrize("arg,size", [(None, None), ("", None), ("x", None), ("-1", None),
                                      ("1.5", None), ("+3", None), ("LAST", None),
                                      ("10 FIRST", 10), ("10 LAST LAST", 10)])
def test_parse_bdat_refuses(arg: str | None, size: int | None) -> None:
    with pytest.raises(BdatSyntaxError) as caught:
        parse_bdat(arg)
    assert caught.value.size == size


async def read_chunks(chunks: list[bytes], limit: int, reader_limit: int = 1001
                      ) -> tuple[ChunkedMessage, bytes]:
    """Feed the chunks (without BDAT lines) to a real StreamReader, read them with
    `ChunkedMessage`, and return it with whatever the reader has left."""
    reader = asyncio.StreamReader(limit=reader_limit)
    reader.feed_data(b"".join(chunks) + b"NEXT\r\n")
    reader.feed_eof()
    message = ChunkedMessage(limit)
    for chunk in chunks:
        await message.read_chunk(reader, len(chunk))
    return message, await reader.read()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=8),
       st.integers(min_value=8, max_value=1001))
def test_any_chunks_join_to_the_exact_octets(chunks: list[bytes], reader_limit: int) -> None:
    message, rest = asyncio.run(read_chunks(chunks, 1 << 20, reader_limit))
    received = message.message()
    assert received.data == b"".join(chunks) and received.size == len(received.data)
    assert rest == b"NEXT\r\n"


@given(st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=6),
       st.integers(min_value=-3, max_value=3))
def test_limit_is_exact_across_chunks(sizes: list[int], offset: int) -> None:
    chunks = [b"c" * size for size in sizes]
    total = sum(sizes)
    limit = max(total + offset, 0)
    message, rest = asyncio.run(read_chunks(chunks, limit))
    received = message.message()
    assert received.size == total and rest == b"NEXT\r\n"
    assert received.too_big == (total > limit)
    assert received.data == (None if total > limit else b"".join(chunks))


def test_eof_inside_a_chunk_raises() -> None:
    async def scenario() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"only 10 o")
        reader.feed_eof()
        with pytest.raises(asyncio.IncompleteReadError):
            await ChunkedMessage(100).read_chunk(reader, 20)
        reader = asyncio.StreamReader()
        reader.feed_data(b"short")
        reader.feed_eof()
        with pytest.raises(asyncio.IncompleteReadError):
            await skip_chunk(reader, 6)

    asyncio.run(scenario())


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "lockstep"])
async def test_chunks_are_joined_unaltered_and_answered_per_recipient(
        listener: Listener, pipelined: bool) -> None:
    client = await listener.client()
    chunks = [AWKWARD[:7], AWKWARD[7:30], AWKWARD[30:]]
    result = await client.bdat_transaction(
        "a@example.org", ["bob@example.org", "reject1@example.org", "carol@example.org"],
        chunks, pipelined=pipelined)
    assert [r.status for r in result.rcpt] == [S.RCPT_OK] * 3
    assert [r.status for r in result.chunks] == [S.DELIVERED, S.DELIVERED]
    assert result.chunks[0].text == "2.0.0 7 octets received, 7 in this message"
    assert result.chunks[1].text == "2.0.0 23 octets received, 30 in this message"
    assert [r.status for r in result.after_data] == [S.DELIVERED, S.SIEVE_REJECT, S.DELIVERED]
    assert "<carol@example.org>" in result.after_data[2].text
    await assert_no_extra_reply(client)
    (transaction,) = listener.deliverer.transactions
    assert transaction.data == AWKWARD
    assert transaction.recipients == ("bob@example.org", "reject1@example.org",
                                      "carol@example.org")


async def test_empty_last_chunk_ends_the_message(listener: Listener) -> None:
    client = await listener.client()
    result = await client.bdat_transaction("a@example.org", ["bob@example.org"],
                                           [MESSAGE, b""])
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == MESSAGE


async def test_bdat_0_last_alone_is_an_empty_message(listener: Listener) -> None:
    client = await listener.client()
    result = await client.bdat_transaction("", ["bob@example.org"], [b""])
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == b""
    assert listener.deliverer.transactions[0].mail_from == ""


async def test_two_transactions_in_one_write(listener: Listener) -> None:
    """Pipelining across transactions: the second MAIL follows the first LAST chunk."""
    client = await listener.client()
    statuses = await exchange(
        client, ENVELOPE + bdat_chunk(b"first\r\n", last=True)
        + b"MAIL FROM:<b@example.org>\r\nRCPT TO:<carol@example.org>\r\n"
        + bdat_chunk(b"sec") + bdat_chunk(b"ond\r\n", last=True), 7)
    assert statuses == [S.SENDER_OK, S.RCPT_OK, S.DELIVERED,
                        S.SENDER_OK, S.RCPT_OK, S.DELIVERED, S.DELIVERED]
    await assert_no_extra_reply(client)
    assert [t.data for t in listener.deliverer.transactions] == [b"first\r\n", b"second\r\n"]


async def test_size_limit_is_exact_across_chunks(listener: Listener) -> None:
    client = await listener.client()
    message = message_of_size(MAX_SIZE)
    result = await client.bdat_transaction("a@example.org", ["bob@example.org"],
                                           split_chunks(message, 3))
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == message


async def test_over_the_limit_across_chunks_gets_552_per_recipient_after_last(
        listener: Listener) -> None:
    client = await listener.client()
    rcpts = ["bob@example.org", "carol@example.org"]
    # Every chunk is under the limit; together they are one octet over it.
    chunks = split_chunks(message_of_size(MAX_SIZE + 1), 4)
    result = await client.bdat_transaction("a@example.org", rcpts, chunks)
    assert [r.status for r in result.chunks] == [S.DELIVERED] * 3
    assert [r.status for r in result.after_data] == [S.TOO_BIG, S.TOO_BIG]
    for rcpt, reply in zip(rcpts, result.after_data):
        assert f"<{rcpt}>" in reply.text
    await assert_no_extra_reply(client)
    assert listener.deliverer.transactions == []
    again = await client.bdat_transaction("a@example.org", ["bob@example.org"], [MESSAGE])
    assert [r.status for r in again.after_data] == [S.DELIVERED]


async def test_chunks_past_the_limit_are_still_read_to_their_end(listener: Listener) -> None:
    client = await listener.client()
    big = b"x" * (3 * MAX_SIZE)
    result = await client.bdat_transaction(
        "a@example.org", ["bob@example.org"], [big, b"RSET\r\nQUIT\r\n" + big, b"tail"])
    assert [r.status for r in result.chunks] == [S.DELIVERED, S.DELIVERED]
    assert [r.status for r in result.after_data] == [S.TOO_BIG]
    await assert_no_extra_reply(client)


@pytest.mark.parametrize("setup,expected", [
    (b"", S.NEED_MAIL),
    (b"MAIL FROM:<a@example.org>\r\n", S.NEED_RCPT),
    (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<unknown@example.org>\r\n", S.NEED_RCPT),
], ids=["no-mail", "no-rcpt", "rcpt-refused"])
@pytest.mark.parametrize("last", [False, True], ids=["chunk", "last"])
async def test_bdat_out_of_sequence_is_refused_and_its_chunk_skipped(
        listener: Listener, setup: bytes, expected: str, last: bool) -> None:
    client = await listener.client()
    statuses = await exchange(client, setup + bdat_chunk(b"NOOP\r\nRSET\r\n", last=last),
                              setup.count(b"\r\n") + 1)
    assert statuses[-1] == expected, statuses
    await assert_no_extra_reply(client)
    assert listener.deliverer.transactions == []


async def test_bdat_before_lhlo_is_refused(listener: Listener) -> None:
    client = await listener.client(lhlo=False)
    await client.send(bdat_chunk(b"NOOP\r\n", last=True))
    assert (await client.read_reply()).text == "5.5.1 Send LHLO first"
    await assert_no_extra_reply(client)


@pytest.mark.parametrize("arg", [b"", b" ", b" abc", b" -1", b" 1.5", b" LAST", b" 0x10"])
async def test_unreadable_chunk_size_answers_501_and_closes(listener: Listener,
                                                            arg: bytes) -> None:
    """Nothing tells the chunk from the next command, so what follows must not run: here a
    whole pipelined transaction that would otherwise be delivered."""
    client = await listener.client()
    statuses = await exchange(
        client, ENVELOPE + b"BDAT" + arg + b"\r\n"
        b"RSET\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@example.org>\r\n"
        + bdat_chunk(b"smuggled\r\n", last=True), 3)
    assert statuses == [S.SENDER_OK, S.RCPT_OK, S.SYNTAX_ERROR]
    assert await asyncio.wait_for(client.reader.read(), 5) == b""
    await asyncio.sleep(0.1)
    assert listener.deliverer.transactions == []


async def test_bad_end_marker_skips_the_chunk_and_keeps_the_connection(
        listener: Listener) -> None:
    client = await listener.client()
    statuses = await exchange(client, ENVELOPE + b"BDAT 6 FINAL\r\nNOOP\r\n", 3)
    assert statuses == [S.SENDER_OK, S.RCPT_OK, S.SYNTAX_ERROR]
    await assert_no_extra_reply(client)
    # The transaction is still open and takes a proper chunk.
    assert await exchange(client, bdat_chunk(MESSAGE, last=True), 1) == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == MESSAGE


async def test_data_after_bdat_is_refused_until_rset(listener: Listener) -> None:
    client = await listener.client()
    statuses = await exchange(client, ENVELOPE + bdat_chunk(b"part one\r\n") + b"DATA\r\n", 4)
    assert statuses == [S.SENDER_OK, S.RCPT_OK, S.DELIVERED, S.BAD_SEQUENCE]
    assert (await client.command("RSET")).status == S.RESET_OK
    result = await client.transaction("a@example.org", ["carol@example.org"], MESSAGE)
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    (transaction,) = listener.deliverer.transactions
    assert transaction.data == MESSAGE and transaction.recipients == ("carol@example.org",)


async def test_rcpt_after_bdat_is_refused(listener: Listener) -> None:
    client = await listener.client()
    statuses = await exchange(
        client, ENVELOPE + bdat_chunk(b"part one\r\n") + b"RCPT TO:<carol@example.org>\r\n"
        + bdat_chunk(b"part two\r\n", last=True), 5)
    assert statuses == [S.SENDER_OK, S.RCPT_OK, S.DELIVERED, S.BAD_SEQUENCE, S.DELIVERED]
    (transaction,) = listener.deliverer.transactions
    assert transaction.recipients == ("bob@example.org",)
    assert transaction.data == b"part one\r\npart two\r\n"


async def test_rset_discards_the_chunks(listener: Listener) -> None:
    client = await listener.client()
    statuses = await exchange(client, ENVELOPE + bdat_chunk(b"forgotten\r\n") + b"RSET\r\n", 4)
    assert statuses == [S.SENDER_OK, S.RCPT_OK, S.DELIVERED, S.RESET_OK]
    result = await client.bdat_transaction("a@example.org", ["bob@example.org"], [MESSAGE])
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert [t.data for t in listener.deliverer.transactions] == [MESSAGE]


async def test_disconnect_inside_a_chunk_delivers_nothing(listener: Listener) -> None:
    client = await listener.client()
    await exchange(client, ENVELOPE + b"BDAT 100 LAST\r\nonly forty octets of the promised "
                   b"hundred\r\n", 2)
    await client.close()
    await asyncio.sleep(0.2)
    assert listener.deliverer.transactions == []
    other = await listener.client()
    result = await other.bdat_transaction("a@example.org", ["bob@example.org"], [MESSAGE])
    assert [r.status for r in result.after_data] == [S.DELIVERED]


async def test_drain_lets_a_chunked_transaction_finish(listener: Listener) -> None:
    client = await listener.client()
    assert await exchange(client, ENVELOPE + bdat_chunk(b"first half, "), 3) == [
        S.SENDER_OK, S.RCPT_OK, S.DELIVERED]
    listener.registry.drain()
    await asyncio.sleep(0.1)
    await client.send(bdat_chunk(b"second half\r\n", last=True))
    assert (await client.read_reply()).status == S.DELIVERED
    assert (await client.read_reply()).status == S.SHUTTING_DOWN
    assert await asyncio.wait_for(client.reader.read(), 5) == b""
    assert listener.deliverer.transactions[0].data == b"first half, second half\r\n"


async def test_pipelined_commands_after_the_shutdown_421_are_not_run(
        listener: Listener) -> None:
    """The 421 after the last transaction ends the connection: a transaction the client
    pipelined behind it is neither answered nor delivered."""
    listener.deliverer.delay = 0.3
    client = await listener.client()
    await exchange(client, ENVELOPE, 2)
    listener.registry.drain()
    await client.send(bdat_chunk(b"one\r\n", last=True)
                      + b"MAIL FROM:<a@example.org>\r\nRCPT TO:<carol@example.org>\r\n"
                      + bdat_chunk(b"two\r\n", last=True))
    assert (await client.read_reply()).status == S.DELIVERED
    assert (await client.read_reply()).status == S.SHUTTING_DOWN
    assert await asyncio.wait_for(client.reader.read(), 5) == b""
    await asyncio.sleep(0.5)
    assert [t.data for t in listener.deliverer.transactions] == [b"one\r\n"]


@pytest.mark.parametrize("body,expected", [
    ("BODY=8BITMIME", S.SENDER_OK), ("body=8bitmime", S.SENDER_OK), ("BODY=7BIT", S.SENDER_OK),
    ("BODY=BINARYMIME", "555 5.5.4"), ("BODY=binarymime SIZE=10", "555 5.5.4"),
])
async def test_body_parameter(listener: Listener, body: str, expected: str) -> None:
    client = await listener.client()
    reply = await client.command(f"MAIL FROM:<a@example.org> {body}")
    assert reply.status == expected, reply
    if expected != S.SENDER_OK:  # refused MAIL leaves no state
        assert (await client.command("MAIL FROM:<a@example.org>")).status == S.SENDER_OK


async def test_8bit_message_via_bdat_with_body_8bitmime(listener: Listener) -> None:
    client = await listener.client()
    message = "Subject: gr\u00fc\u00dfe\r\n\r\n\u00e9t\u00e9 \u20ac\r\n".encode()
    result = await client.bdat_transaction("a@example.org", ["bob@example.org"], [message],
                                           mail_params="BODY=8BITMIME")
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    assert listener.deliverer.transactions[0].data == message
