"""Reading the message text after DATA (RFC 5321 §4.1.1.4, §4.5.2; RFC 2033 §4.2).

The message ends at the first line that is exactly "." followed by CRLF, where lines are
separated by CRLF only. A bare LF or a lone CR never ends a line here, so `<LF>.<LF>`,
`<LF>.<CR><LF>` or `<CR>.<CR>` inside the data is message text, not the end of it: that is
aiosmtpd's defence against SMTP smuggling (CVE-2023-51764 family), kept as is. Messages
whose own line endings are bare LF are still accepted: they just arrive as long "lines".

Unlike aiosmtpd's reader, no line length limit applies (an MDA must not refuse a message the
MTA already accepted because of a long line); only the total size does, and an oversized
message is read to its end and discarded so that the connection stays in sync.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from dataclasses import dataclass

CRLF = b"\r\n"
END_OF_DATA = b".\r\n"

# Re-arm the idle timer after this many bytes of message text (bytes).
_PROGRESS_EVERY = 64 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """The message text as received.

    Attributes:
        data: the dot-unstuffed bytes, or None when the message exceeded the limit.
        size: the message size in bytes after dot-unstuffing (counted to the end, also when
            too big).
    """

    data: bytes | None
    size: int

    @property
    def too_big(self) -> bool:
        """True when the message was over the size limit and was discarded."""
        return self.data is None


async def read_message(reader: asyncio.StreamReader, limit: int,
                       on_progress: Callable[[], None] | None = None) -> ReceivedMessage:
    """Read message text up to and including the terminating `.` line.

    Args:
        reader: the connection's stream, positioned just after our 354 reply.
        limit: the largest message accepted, in bytes after dot-unstuffing.
        on_progress: called every 64 KiB, e.g. to re-arm the connection's idle timeout.

    Returns:
        The message (dot-unstuffed, RFC 5321 §4.5.2), or a `ReceivedMessage` whose `data` is
        None when it was bigger than `limit`.

    Raises:
        asyncio.IncompleteReadError: the peer closed the connection before the end of data.
        asyncio.CancelledError: the connection was lost (aiosmtpd cancels its task).
    """
    # One growing buffer rather than a list of lines: a list would hold a bytes object per
    # line (about 40 bytes of overhead each, 50% on top of a message of 80-byte lines) and
    # joining it needs the whole message twice. BytesIO.getvalue() hands over its buffer
    # without copying it, so the message is in memory once.
    buffer = io.BytesIO()
    size = 0
    since_progress = 0
    at_line_start = True
    too_big = False
    while True:
        try:
            chunk = await reader.readuntil(CRLF)
        except asyncio.LimitOverrunError as overrun:
            # A "line" longer than the reader's buffer limit: take what is buffered (the
            # reader leaves a possible partial CRLF behind) and continue the same line.
            chunk = await reader.readexactly(overrun.consumed)
        if at_line_start:
            if chunk == END_OF_DATA:
                break
            if chunk[:1] == b".":
                # "If the first character is a period and there are other characters on
                # the line, the first character is deleted." (RFC 5321 §4.5.2)
                chunk = chunk[1:]
        at_line_start = chunk.endswith(CRLF)
        size += len(chunk)
        since_progress += len(chunk)
        if since_progress >= _PROGRESS_EVERY and on_progress is not None:
            since_progress = 0
            on_progress()
        if too_big:
            continue
        if size > limit:
            too_big = True
            buffer = io.BytesIO()
            continue
        buffer.write(chunk)
    return ReceivedMessage(None if too_big else buffer.getvalue(), size)
