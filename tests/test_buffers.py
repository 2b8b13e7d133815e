"""mda.buffers: a BytesIO of the final size that becomes the result."""

from __future__ import annotations

import pytest

from mda.buffers import presized_buffer


@pytest.mark.parametrize("pieces", [[], [b""], [b"a"], [b"ab", b"", b"cde"], [b"x" * 70_000] * 3])
def test_written_pieces_are_the_value(pieces: list[bytes]) -> None:
    expected = b"".join(pieces)
    out = presized_buffer(len(expected))
    assert out.tell() == 0
    for piece in pieces:
        out.write(memoryview(piece))
    assert out.getvalue() == expected


def test_bytes_not_written_are_zeros() -> None:
    out = presized_buffer(5)
    out.write(b"ab")
    assert out.getvalue() == b"ab\0\0\0"
