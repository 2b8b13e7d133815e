"""Building one large `bytes` object from pieces without a second copy of it.

`b"".join(pieces)` needs the pieces and the result at once: twice the size. A
`io.BytesIO` written piece by piece and read with `getvalue()` hands its own buffer over as
the result (CPython does not copy it when nothing else refers to the buffer), so only the
result and the piece being written are in memory. Growing the buffer may copy it on
reallocation, so `presized_buffer` makes it the final size up front.
"""

from __future__ import annotations

import io


def presized_buffer(size: int) -> io.BytesIO:
    """A BytesIO with room for exactly `size` bytes, positioned at 0.

    Write exactly `size` bytes, then take the result with `getvalue()`: no reallocation
    happens while writing and the result is the buffer itself, not a copy. (The room is
    made by writing the last byte, which zero-fills the rest; what is written overwrites
    it. Writing fewer bytes leaves zeros at the end, so callers check their count.)

    Args:
        size: the final length in bytes (>= 0).

    Returns:
        The buffer.
    """
    out = io.BytesIO()
    if size > 0:
        out.seek(size - 1)
        out.write(b"\0")
        out.seek(0)
    return out
