"""CHUNKING: the BDAT command (RFC 3030 §2, §4.2), its argument and its chunks.

`BDAT <chunk-size> [LAST]` is followed by exactly chunk-size octets of message text: no
dot-stuffing, no line structure, so bare LF, lone CR, NUL and a line holding only "." are
message text like any other octet (RFC 3030 §2: "the octets are not altered in any way").
The message is the concatenation of the transaction's chunks; the chunk marked LAST ends it.

- `parse_bdat` reads the argument (sans-IO). Its `BdatSyntaxError` says whether the size
  could still be read: if so, the chunk's octets are read and thrown away so the connection
  stays in sync; if not, nothing can tell message text from the next command, and the
  caller closes the connection after its 501.
- `ChunkedMessage` collects a transaction's chunks (in one buffer that becomes the message
  at LAST without a copy, so a large message is in memory once) and applies the size limit
  across chunks: past the limit it keeps counting but stops keeping, so the LAST chunk can
  still be answered with `552 5.3.4` per recipient, as after DATA.

EOF inside a chunk raises `asyncio.IncompleteReadError` (the transaction is dropped: nothing
was stored, nothing answered 250).
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from mda.lmtp.data import ReceivedMessage

# Largest piece read from the stream at once (bytes); also how often the idle timer is re-armed.
_PIECE = 256 * 1024

# RFC 3030 §2: bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF
#              chunk-size ::= 1*DIGIT ; end-marker ::= "LAST"
_SIZE = re.compile(r"[0-9]+")


class BdatSyntaxError(ValueError):
    """The BDAT argument is not `<chunk-size> [LAST]`.

    Attributes:
        size: the chunk size when it was still readable (the octets follow and must be
            skipped), or None when it was not (the stream cannot be resynchronised).
    """

    def __init__(self, message: str, size: int | None) -> None:
        super().__init__(message)
        self.size = size


@dataclass(frozen=True, slots=True)
class BdatCommand:
    """One parsed BDAT command.

    Attributes:
        size: the chunk size in octets (RFC 3030 §2 `chunk-size`).
        last: the `LAST` end-marker was given: this chunk ends the message.
    """

    size: int
    last: bool


def parse_bdat(arg: str | None) -> BdatCommand:
    """Parse the argument of BDAT (RFC 3030 §2).

    Args:
        arg: what follows `BDAT ` on the command line, or None when nothing does.

    Returns:
        The chunk size and whether LAST was given (the keyword in any case, as ABNF strings
        are case-insensitive).

    Raises:
        BdatSyntaxError: no size, a size that is not 1*DIGIT, or something other than one
            `LAST` after it; `size` tells whether the chunk size itself was readable.
    """
    words = (arg or "").split()
    if not words or not _SIZE.fullmatch(words[0]):
        raise BdatSyntaxError("BDAT needs a chunk size of decimal digits", None)
    size = int(words[0])
    if len(words) == 1:
        return BdatCommand(size, last=False)
    if len(words) == 2 and words[1].upper() == "LAST":
        return BdatCommand(size, last=True)
    raise BdatSyntaxError("only LAST may follow the chunk size", size)


async def _pieces(reader: asyncio.StreamReader, size: int,
                  on_progress: Callable[[], None] | None) -> AsyncIterator[bytes]:
    """Yield exactly `size` octets from `reader`, in pieces as they arrive."""
    remaining = size
    while remaining:
        piece = await reader.read(min(remaining, _PIECE))
        if not piece:
            raise asyncio.IncompleteReadError(b"", remaining)
        remaining -= len(piece)
        if on_progress is not None:
            on_progress()
        yield piece


async def skip_chunk(reader: asyncio.StreamReader, size: int,
                     on_progress: Callable[[], None] | None = None) -> None:
    """Read and discard exactly `size` octets (a refused chunk), keeping the stream in sync.

    Raises:
        asyncio.IncompleteReadError: the peer closed the connection inside the chunk.
    """
    async for _ in _pieces(reader, size, on_progress):
        pass


class ChunkedMessage:
    """The chunks of one transaction's message, with the size limit applied across them.

    Args:
        limit: the largest message accepted, in octets.

    Attributes:
        size: octets received so far in this transaction (also those beyond the limit).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._buffer = io.BytesIO()
        self._too_big = False

    @property
    def too_big(self) -> bool:
        """True once the chunks so far exceed the limit (their text was discarded)."""
        return self._too_big

    async def read_chunk(self, reader: asyncio.StreamReader, size: int,
                         on_progress: Callable[[], None] | None = None) -> None:
        """Read exactly `size` octets and add them to the message.

        Once the total passes the limit, everything kept so far is dropped and the rest is
        only counted (the reply after LAST is `552 5.3.4` for every recipient).

        Args:
            reader: the connection's stream, just after the BDAT command line.
            size: the chunk size from the BDAT command.
            on_progress: called after each piece read, e.g. to re-arm the idle timeout.

        Raises:
            asyncio.IncompleteReadError: the peer closed the connection inside the chunk.
        """
        async for piece in _pieces(reader, size, on_progress):
            self.size += len(piece)
            if self._too_big:
                continue
            if self.size > self.limit:
                self._too_big = True
                self._buffer = io.BytesIO()
                continue
            self._buffer.write(piece)

    def message(self) -> ReceivedMessage:
        """The whole message after LAST: the chunks as one `bytes` (the buffer they were
        written to, not a copy: `BytesIO.getvalue`), or no data when it was over the
        limit."""
        if self._too_big:
            return ReceivedMessage(None, self.size)
        return ReceivedMessage(self._buffer.getvalue(), self.size)


__all__ = ["BdatCommand", "BdatSyntaxError", "ChunkedMessage", "parse_bdat", "skip_chunk"]
