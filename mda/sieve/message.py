"""The message as Sieve tests see it: header fields, decoded values, addresses, body parts.

`parse_message` never raises: bare LF, 8-bit bytes in headers, NUL bytes, a message with no
header section at all are all accepted (RFC 5228 §2.4.2.1 leaves malformed input to the
implementation; mda must never lose mail over it).

Header values are unfolded (RFC 5322 §2.2.3), stripped of leading and trailing white space
and decoded from RFC 2047 encoded words before matching (RFC 5228 §2.7.2). An encoded word
in a charset Python does not know is decoded as its raw bytes (UTF-8, else Latin-1), as
Pigeonhole does.

Nothing of a message body is copied while parsing: `parse_message` parses the header
section only, and the MIME structure (`Message.mime`, `parse_entity`) is a tree of offsets
into the one message buffer. A part's bytes are sliced only when asked for (`raw_body`,
`preamble`, `epilogue`), and `MimePart.text` undoes the transfer encoding and the charset a
chunk at a time into the one result string, so a test that reads a large part costs about
that part's text beside the message.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email
import email.policy
import quopri
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message as EmailMessage
from functools import cached_property, lru_cache
from typing import TypeVar

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
T = TypeVar("T")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def decode_bytes(data: bytes | bytearray | memoryview) -> str:
    """Decode raw header or text bytes: UTF-8 when valid, else Latin-1 (never raises).

    Any bytes-like object is accepted; a memoryview is decoded without copying it first.
    """
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        return str(data, "latin-1")


def _decode_word(charset: str, encoding: str, text: str) -> str | None:
    charset = charset.split("*", 1)[0]  # RFC 2231 language suffix
    try:
        if encoding in "bB":
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        else:
            raw = quopri.decodestring(text.replace("_", " ").encode("ascii", "replace"),
                                      header=True)
    except (binascii.Error, ValueError):
        return None
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return decode_bytes(raw)


def decode_rfc2047(value: str) -> str:
    """Decode RFC 2047 encoded words; white space between adjacent words is dropped (§6.2).

    An encoded word that cannot be decoded is left as written.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    last_was_word = False
    for m in _ENCODED_WORD.finditer(value):
        between = value[pos:m.start()]
        decoded = _decode_word(m.group(1), m.group(2), m.group(3))
        if decoded is None:
            out.append(between + m.group(0))
            last_was_word = False
        else:
            if not (last_was_word and between.strip(" \t\r\n") == ""):
                out.append(between)
            out.append(decoded)
            last_was_word = True
        pos = m.end()
    out.append(value[pos:])
    return "".join(out)


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field.

    Attributes:
        name: the field name as written.
        raw: the raw value bytes after the colon, folding intact.
    """

    name: str
    raw: bytes

    @property
    def unfolded(self) -> str:
        """The value unfolded and stripped, not RFC 2047 decoded."""
        return decode_bytes(_FOLD.sub(b"", self.raw).strip(b" \t\r\n"))

    @property
    def value(self) -> str:
        """The value unfolded, stripped and RFC 2047 decoded (what header tests match)."""
        return decode_rfc2047(self.unfolded)


_FIELD_NAME = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


def split_header_range(buf: bytes, start: int, end: int) -> tuple[list[HeaderField], int, int]:
    """Split the entity `buf[start:end]` into header fields and body, by offsets.

    The header section ends at the first empty line; a line that is neither a field nor
    a continuation also ends it (it then starts the body). Bare LF is accepted. Only the
    header lines are copied; the body is not touched.

    Args:
        buf: the buffer holding the entity (the whole message).
        start, end: the entity's offsets in `buf`, 0 <= start <= end <= len(buf).

    Returns:
        (fields, header_end, body_start): the header section is `buf[start:header_end]`
        (without the empty line), the body `buf[body_start:end]`.
    """
    fields: list[HeaderField] = []
    pos = start
    current: list[bytes] | None = None
    name = ""
    while pos < end:
        newline = buf.find(b"\n", pos, end)
        line_end = end if newline < 0 else newline + 1
        line = buf[pos:line_end]
        stripped = line.rstrip(b"\r\n")
        if stripped == b"":
            if current is not None:
                fields.append(HeaderField(name, b"".join(current)))
            return fields, pos, line_end
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            pos = line_end
            continue
        m = _FIELD_NAME.match(stripped)
        if m is None:
            break
        if current is not None:
            fields.append(HeaderField(name, b"".join(current)))
        name = m.group(1).decode("ascii")
        current = [line[m.end():]]
        pos = line_end
    if current is not None:
        fields.append(HeaderField(name, b"".join(current)))
    return fields, pos, pos


def split_header(raw: bytes) -> tuple[list[HeaderField], bytes, bytes]:
    """Split a message into header fields, the raw header section and the body
    (`split_header_range` over all of `raw`, the two sections sliced off).

    Returns:
        (fields, header_bytes, body_bytes).
    """
    fields, header_end, body_start = split_header_range(raw, 0, len(raw))
    return fields, raw[:header_end], raw[body_start:]


#: how many bytes of a transfer-encoded body are decoded at a time
DECODE_CHUNK = 1 << 20
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_CRLF = re.compile(rb"\r\n")


class _Undecodable(Exception):
    """A base64 body that does not decode: it is used as transferred (RFC 2045 §6)."""


class MimePart:
    """One MIME entity (RFC 2045) for body, mime, foreverypart and extracttext.

    A part holds offsets into the one message buffer, never a copy of its bytes: the
    properties below slice when asked, and `text` decodes the transfer encoding and the
    charset a chunk at a time.

    Attributes:
        fields: its header fields.
        content_type: lower-cased "type/subtype" (default text/plain, RFC 2045 §5.2).
        params: Content-Type parameters, lower-cased names.
        children: sub-parts of a multipart, or the message of a message/rfc822.
        parent: the enclosing part, None for the top-level message.
        buffer: the message bytes all offsets refer to.
        body_start, body_end: the body as transferred is `buffer[body_start:body_end]`.
        preamble_span / epilogue_span: (start, end) offsets of the text around the parts
            of a multipart (RFC 2046 §5.1.1); empty spans otherwise.
    """

    __slots__ = ("fields", "content_type", "params", "children", "parent", "buffer",
                 "body_start", "body_end", "preamble_span", "epilogue_span")

    def __init__(self, fields: list[HeaderField], content_type: str, params: dict[str, str],
                 buffer: bytes, body_start: int, body_end: int,
                 parent: MimePart | None = None) -> None:
        self.fields = fields
        self.content_type = content_type
        self.params = params
        self.children: list[MimePart] = []
        self.parent = parent
        self.buffer = buffer
        self.body_start = body_start
        self.body_end = body_end
        self.preamble_span = (body_start, body_start)
        self.epilogue_span = (body_end, body_end)

    @property
    def raw_body(self) -> bytes:
        """The body bytes as transferred (a copy, sliced now)."""
        return self.buffer[self.body_start:self.body_end]

    def body_view(self) -> memoryview:
        """The body bytes as transferred, as a view into the message (no copy)."""
        return memoryview(self.buffer)[self.body_start:self.body_end]

    @property
    def preamble(self) -> bytes:
        """The text before the first boundary of a multipart (RFC 2046 §5.1.1), else b""."""
        return self.buffer[self.preamble_span[0]:self.preamble_span[1]]

    @property
    def epilogue(self) -> bytes:
        """The text after the closing boundary of a multipart (RFC 2046 §5.1.1), else b""."""
        return self.buffer[self.epilogue_span[0]:self.epilogue_span[1]]

    def header_values(self, name: str) -> list[str]:
        """Decoded values of every field named `name` (case-insensitive)."""
        lname = name.lower()
        return [f.value for f in self.fields if f.name.lower() == lname]

    @property
    def is_multipart(self) -> bool:
        """True for multipart/* parts."""
        return self.content_type.startswith("multipart/")

    def _transfer_encoding(self) -> str:
        return (self.header_values("content-transfer-encoding") or ["7bit"])[0].strip().lower()

    def _raw_chunks(self) -> Iterator[memoryview]:
        view = self.body_view()
        for pos in range(0, len(view), DECODE_CHUNK):
            yield view[pos:pos + DECODE_CHUNK]

    def _base64_chunks(self) -> Iterator[bytes]:
        """The base64 body decoded a chunk at a time, exactly as `base64.b64decode` decodes
        the body stripped of non-alphabet bytes and padded to a multiple of 4: whole
        quads without "=" leave the decoder in its initial state, so they are decoded as
        they come; from the first "=" on, the rest is decoded in one piece.

        Raises:
            _Undecodable: when that decoding fails (the last piece is the only one that can).
        """
        pending = b""
        tail: list[bytes] | None = None
        for chunk in self._raw_chunks():
            stripped = _NOT_BASE64.sub(b"", chunk)
            if tail is not None:
                tail.append(stripped)
                continue
            pending += stripped
            if b"=" in pending:
                tail = [pending]
                continue
            whole = len(pending) - len(pending) % 4
            if whole:
                yield binascii.a2b_base64(pending[:whole])
                pending = pending[whole:]
        rest = b"".join(tail) if tail is not None else pending
        try:
            yield binascii.a2b_base64(rest + b"=" * (-len(rest) % 4))
        except (binascii.Error, ValueError):
            raise _Undecodable from None

    def _quoted_printable_chunks(self) -> Iterator[bytes]:
        """The quoted-printable body decoded a chunk of whole lines at a time (a soft line
        break or an =XX escape never spans a line break, so this is `quopri.decodestring`
        of the whole body)."""
        view = self.body_view()
        pos = 0
        while pos < len(view):
            end = min(pos + DECODE_CHUNK, len(view))
            if end < len(view):  # end after a line break: the last one, else the next
                newline = self.buffer.rfind(b"\n", self.body_start + pos,
                                            self.body_start + end)
                if newline < 0:
                    newline = self.buffer.find(b"\n", self.body_start + end, self.body_end)
                end = newline + 1 - self.body_start if newline >= 0 else len(view)
            yield quopri.decodestring(bytes(view[pos:end]))
            pos = end

    def _decoded_chunks(self) -> Iterator[bytes | memoryview]:
        """The body after Content-Transfer-Encoding decoding (RFC 2045 §6), in pieces.

        Raises:
            _Undecodable: after the last piece of a base64 body that does not decode.
        """
        cte = self._transfer_encoding()
        if cte == "base64":
            yield from self._base64_chunks()
        elif cte == "quoted-printable":
            yield from self._quoted_printable_chunks()
        else:
            yield self.body_view()

    def _transferred(self) -> Iterator[memoryview]:
        yield self.body_view()

    def _consume(self, consume: Callable[[Callable[[], Iterator[bytes | memoryview]]], T]) -> T:
        """`consume` of the decoded pieces; of the body as transferred when it turns out
        not to decode (base64 that `b64decode` refuses)."""
        try:
            return consume(self._decoded_chunks)
        except _Undecodable:
            return consume(self._transferred)

    def decoded_body(self) -> bytes:
        """The body after Content-Transfer-Encoding decoding (RFC 2045 §6); a base64 body
        that does not decode is returned as transferred."""
        return self._consume(lambda pieces: b"".join(pieces()))

    def text(self) -> str:
        """The decoded body as text in its declared charset (UTF-8, then Latin-1 when it
        is unknown or the bytes are not valid in it).

        Decoded a chunk at a time into the one result string, so a large part costs about
        its text once beside the message.
        """
        charset = self.params.get("charset", "").strip() or "us-ascii"

        def consume(pieces: Callable[[], Iterator[bytes | memoryview]]) -> str:
            for encoding in (charset, "utf-8"):
                try:
                    return _decode_pieces(pieces(), encoding)
                except (LookupError, UnicodeDecodeError):
                    continue
            return _decode_pieces(pieces(), "latin-1")

        return self._consume(consume)


@lru_cache(maxsize=64)
def _stateless(encoding: str) -> bool:
    """Whether `encoding` decodes piece by piece exactly as in one piece: the UTF codecs
    and the single-byte table codecs (ISO 8859, Windows, KOI8, Mac...)."""
    info = codecs.lookup(encoding)
    if info.name in ("ascii", "utf-8", "latin-1", "iso8859-1", "utf-16", "utf-16-le",
                     "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"):
        return True
    module = sys.modules.get(getattr(info.incrementaldecoder, "__module__", ""))
    return isinstance(getattr(module, "decoding_table", None), str)


def _decode_pieces(pieces: Iterator[bytes | memoryview], encoding: str) -> str:
    """`bytes.decode(encoding)` of the concatenated pieces, built piece by piece.

    Raises:
        LookupError: unknown encoding, or not a text encoding.
        UnicodeDecodeError: the bytes are not valid in it.
    """
    first = next(pieces, b"")
    second = next(pieces, None)
    if second is None:
        return str(first, encoding)
    str(b"", encoding)  # LookupError for unknown and non-text encodings, as bytes.decode
    if not _stateless(encoding):
        return str(b"".join([first, second, *pieces]), encoding)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    text = decoder.decode(first)
    del first
    text += decoder.decode(second)
    del second
    for piece in pieces:
        text += decoder.decode(piece)  # in place: `text` has no other reference
    text += decoder.decode(b"", True)
    return text


def _parse_content_type(fields: list[HeaderField], default: str) -> tuple[str, dict[str, str]]:
    values = [f.unfolded for f in fields if f.name.lower() == "content-type"]
    if not values:
        return default, {}
    msg = EmailMessage()
    msg["Content-Type"] = values[0]
    ctype = msg.get_content_type() if "/" in values[0].split(";")[0] else default
    params: dict[str, str] = {}
    for key, val in msg.get_params(failobj=[])[1:]:
        if isinstance(val, tuple):
            val = email.utils.collapse_rfc2231_value(val)
        params[key.lower()] = str(val)
    return ctype.lower(), params


def _delimiters(buf: bytes, start: int, end: int, boundary: str) -> list[tuple[int, int, bool]]:
    """The boundary delimiter lines of a multipart body `buf[start:end]` (RFC 2046 §5.1.1):
    (start, end, closing) of each "--boundary" (with the line break before it, except at
    the start of the body), followed by optional white space and then a line break or
    the end of the body."""
    tail = re.escape(boundary.encode("utf-8", "replace")) + rb"(--)?[ \t]*(?=\r?\n|$)"
    found: list[tuple[int, int, bool]] = []
    pos = start
    first = re.compile(b"--" + tail).match(buf, start, end)
    if first is not None:
        found.append((first.start(), first.end(), bool(first.group(1))))
        pos = first.end()
    found.extend((m.start(), m.end(), bool(m.group(1)))
                 for m in _delimiter_pattern(tail).finditer(buf, pos, end))
    return found


@lru_cache(maxsize=256)
def _delimiter_pattern(tail: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"\r?\n--" + tail)


def parse_entity(buf: bytes, start: int, end: int, default_type: str = "text/plain",
                 parent: MimePart | None = None, depth: int = 0) -> MimePart:
    """Parse the MIME entity `buf[start:end]` and its sub-parts by offsets (RFC 2045,
    RFC 2046 §5.1 multipart, §5.2.1 message/rfc822); nothing of the bodies is copied.

    Nesting deeper than 20 levels is not parsed further (the part has no children).

    Args:
        buf: the message buffer all parts will refer to.
        start, end: the entity's offsets in `buf`.
        default_type: the type when there is no usable Content-Type ("message/rfc822"
            inside multipart/digest, RFC 2046 §5.1.5).
        parent: the enclosing part.
        depth: nesting level of this entity.

    Returns:
        The part, with its children parsed.
    """
    fields, _, body_start = split_header_range(buf, start, end)
    ctype, params = _parse_content_type(fields, default_type)
    part = MimePart(fields, ctype, params, buf, body_start, end, parent)
    if depth > 20:
        return part
    boundary = params.get("boundary")
    if ctype.startswith("multipart/") and boundary:
        child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
        pieces = _delimiters(buf, body_start, end, boundary)
        if pieces:
            part.preamble_span = (body_start, pieces[0][0])
            for (_, delim_end, closing), nxt in zip(pieces, pieces[1:] + [None]):
                if closing:
                    part.epilogue_span = (delim_end, end)
                    break
                chunk_start = delim_end + (2 if buf[delim_end:delim_end + 2] == b"\r\n"
                                           else 1)
                chunk_end = nxt[0] if nxt else end
                part.children.append(parse_entity(buf, min(chunk_start, chunk_end),
                                                  chunk_end, child_default, part, depth + 1))
    elif ctype == "message/rfc822":
        part.children.append(parse_entity(buf, body_start, end, "text/plain", part,
                                          depth + 1))
    return part


class Message:
    """A parsed message (immutable from the tests' point of view).

    Only the header section is parsed up front; the body and the MIME structure refer to
    `raw` by offsets and are sliced or decoded when a test asks for them.

    Attributes:
        raw: the message bytes as received.
        fields: the top-level header fields in order.
        body_start: the offset in `raw` where the body starts (after the empty line).
    """

    def __init__(self, raw: bytes, fields: list[HeaderField], body_start: int) -> None:
        self.raw = raw
        self.fields = fields
        self.body_start = body_start

    @cached_property
    def body(self) -> bytes:
        """The raw body bytes (after the empty line), sliced from `raw` once."""
        return self.raw[self.body_start:]

    def body_view(self) -> memoryview:
        """The raw body as a view into `raw` (no copy)."""
        return memoryview(self.raw)[self.body_start:]

    @property
    def size(self) -> int:
        """Size in octets (RFC 5228 §5.9)."""
        return len(self.raw)

    @cached_property
    def _by_name(self) -> dict[str, list[HeaderField]]:
        """The fields by lower-cased name (built once; `fields` is never changed in place:
        editheader makes a new Message)."""
        index: dict[str, list[HeaderField]] = {}
        for f in self.fields:
            index.setdefault(f.name.lower(), []).append(f)
        return index

    @cached_property
    def _decoded(self) -> dict[tuple[str, bool], list[str]]:
        return {}

    def _values(self, name: str, decoded: bool) -> list[str]:
        key = (name.lower(), decoded)
        values = self._decoded.get(key)
        if values is None:
            fields = self._by_name.get(key[0], ())
            values = [f.value if decoded else f.unfolded for f in fields]
            self._decoded[key] = values
        return list(values)

    def header_values(self, name: str) -> list[str]:
        """Decoded values of every field named `name`, in order (case-insensitive).

        Values are decoded once per message and cached; callers get their own list.
        """
        return self._values(name, True)

    def raw_header_values(self, name: str) -> list[str]:
        """Unfolded but not RFC 2047 decoded values (address tests, RFC 5228 §5.1)."""
        return self._values(name, False)

    def has_header(self, name: str) -> bool:
        """RFC 5228 §5.5: does a field with this name exist?"""
        return name.lower() in self._by_name

    @cached_property
    def mime(self) -> MimePart:
        """The MIME structure, parsed from `raw` on first use (offsets into `raw`)."""
        return parse_entity(self.raw, 0, len(self.raw))

    def with_fields(self, fields: list[HeaderField]) -> Message:
        """A copy with a different header (editheader, RFC 5293): the new header section,
        an empty line and this body, joined without an intermediate copy of the body."""
        head = b"".join(f.name.encode("utf-8") + b":" + f.raw for f in fields)
        raw = b"".join((head, b"\r\n", self.body_view()))
        return Message(raw, list(fields), len(head) + 2)


def parse_message(raw: bytes | bytearray | memoryview) -> Message:
    """Parse a message for Sieve evaluation; never raises on malformed input.

    Only the header section is parsed (and its lines copied); the body is referred to by
    its offset, so a large message is not duplicated (`bytes` input is used as is).

    Args:
        raw: the message bytes as received (CRLF or bare LF).

    Returns:
        The parsed `Message`.
    """
    data = bytes(raw)
    fields, _, body_start = split_header_range(data, 0, len(data))
    return Message(data, fields, body_start)


__all__ = ["Message", "MimePart", "HeaderField", "parse_message", "parse_entity",
           "split_header", "split_header_range", "decode_rfc2047", "decode_bytes", "email"]
