"""The DATA reader (`mda.lmtp.data.read_message`) on a real `asyncio.StreamReader` fed
with wire bytes: dot-stuffing round-trips, only CRLF.CRLF ends the data, the size limit is
exact, and any bytes at all survive."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from mda.lmtp.data import read_message
from tests.lmtp.client import dot_stuff

LIMIT = 1 << 20


async def read(wire: bytes, limit: int = LIMIT, reader_limit: int = 1001):
    reader = asyncio.StreamReader(limit=reader_limit)
    reader.feed_data(wire)
    reader.feed_eof()
    received = await read_message(reader, limit)
    return received, await reader.read()


def run(coro):
    return asyncio.run(coro)


line_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\r\n", b"\n"))


@settings(max_examples=300, deadline=None)
@given(st.lists(line_bytes, max_size=30), st.integers(min_value=8, max_value=1001))
def test_dot_stuffed_message_round_trips(lines: list[bytes], reader_limit: int) -> None:
    """Whatever the bytes (bare LF, lone CR, NUL, leading dots, long lines), the reader
    returns exactly the message the client stuffed, and stops right after the end marker."""
    message = b"".join(line + b"\r\n" for line in lines)
    received, rest = run(read(dot_stuff(message) + b"NEXT\r\n", reader_limit=reader_limit))
    assert received.data == message
    assert received.size == len(message)
    assert rest == b"NEXT\r\n"


@given(st.integers(min_value=0, max_value=200))
def test_limit_is_exact(extra: int) -> None:
    message = b"x" * 98 + b"\r\n"
    limit = len(message) * 3 + extra
    whole = message * 3 + b"y" * extra
    # exactly at the limit: accepted (the final CRLF is counted, so leave room for it)
    at_limit = whole[:-2] + b"\r\n" if extra >= 2 else None
    if at_limit is not None:
        received, _ = run(read(dot_stuff(at_limit), limit=limit))
        assert received.data == at_limit
    over = whole + b"z\r\n"
    received, rest = run(read(dot_stuff(over) + b"NEXT\r\n", limit=limit))
    assert received.too_big and received.data is None
    assert received.size == len(over)
    assert rest == b"NEXT\r\n"  # read to the end even when too big


def test_a_fragment_starting_with_a_dot_is_not_a_line_start() -> None:
    """A 1501-byte line arrives in two pieces; the reader's buffer limit splits it so that
    the second fragment is ".\r\n". That is the end of a long line, not the end marker."""

    async def scenario():
        reader = asyncio.StreamReader(limit=1001)
        reader.feed_data(b"a" * 1500 + b".")
        task = asyncio.ensure_future(read_message(reader, LIMIT))
        await asyncio.sleep(0.01)
        assert not task.done()
        reader.feed_data(b"\r\nnext\r\n.\r\n")
        reader.feed_eof()
        return await task

    received = run(scenario())
    assert received.data == b"a" * 1500 + b".\r\nnext\r\n"
