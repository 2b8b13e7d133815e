"""The message as Sieve tests see it: header fields, decoded values, addresses, body parts.

`parse_message` never raises: bare LF, 8-bit bytes in headers, NUL bytes, a message with no
header section at all are all accepted (RFC 5228 §2.4.2.1 leaves malformed input to the
implementation; mda must never lose mail over it).

Header values are unfolded (RFC 5322 §2.2.3), stripped of leading and trailing white space
and decoded from RFC 2047 encoded words before matching (RFC 5228 §2.7.2). An encoded word
in a charset Python does not know is decoded as its raw bytes (UTF-8, else Latin-1), as
Pigeonhole does.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import quopri
import re
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from functools import cached_property

_HEADER_LINE = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:(.*)$", re.S)
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def decode_bytes(data: bytes) -> str:
    """Decode raw header or text bytes: UTF-8 when valid, else Latin-1 (never raises)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


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


def split_header(raw: bytes) -> tuple[list[HeaderField], bytes, bytes]:
    """Split a message into header fields, the raw header section and the body.

    The header section ends at the first empty line; a line that is neither a field nor
    a continuation also ends it (it then starts the body). Bare LF is accepted.

    Returns:
        (fields, header_bytes, body_bytes).
    """
    fields: list[HeaderField] = []
    pos = 0
    current: list[bytes] | None = None
    name = ""
    length = len(raw)
    while pos < length:
        end = raw.find(b"\n", pos)
        line_end = length if end < 0 else end + 1
        line = raw[pos:line_end]
        stripped = line.rstrip(b"\r\n")
        if stripped == b"":
            if current is not None:
                fields.append(HeaderField(name, b"".join(current)))
            return fields, raw[:pos], raw[line_end:]
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            pos = line_end
            continue
        m = _HEADER_LINE.match(stripped)
        if m is None:
            break
        if current is not None:
            fields.append(HeaderField(name, b"".join(current)))
        name = m.group(1).decode("ascii")
        rest = line[m.end(1):]
        current = [rest[rest.index(b":") + 1:]]
        pos = line_end
    if current is not None:
        fields.append(HeaderField(name, b"".join(current)))
    return fields, raw[:pos], raw[pos:]


@dataclass(slots=True)
class MimePart:
    """One MIME entity (RFC 2045) for body, mime, foreverypart and extracttext.

    Attributes:
        fields: its header fields.
        content_type: lower-cased "type/subtype" (default text/plain, RFC 2045 §5.2).
        params: Content-Type parameters, lower-cased names.
        raw_body: the body bytes as transferred.
        children: sub-parts of a multipart, or the message of a message/rfc822.
        preamble / epilogue: raw text around the parts of a multipart (RFC 2046 §5.1.1).
        parent: the enclosing part, None for the top-level message.
    """

    fields: list[HeaderField]
    content_type: str
    params: dict[str, str]
    raw_body: bytes
    children: list[MimePart] = field(default_factory=list)
    preamble: bytes = b""
    epilogue: bytes = b""
    parent: MimePart | None = None

    def header_values(self, name: str) -> list[str]:
        """Decoded values of every field named `name` (case-insensitive)."""
        lname = name.lower()
        return [f.value for f in self.fields if f.name.lower() == lname]

    @property
    def is_multipart(self) -> bool:
        """True for multipart/* parts."""
        return self.content_type.startswith("multipart/")

    def decoded_body(self) -> bytes:
        """The body after Content-Transfer-Encoding decoding (RFC 2045 §6)."""
        cte = (self.header_values("content-transfer-encoding") or ["7bit"])[0].strip().lower()
        if cte == "base64":
            try:
                data = re.sub(rb"[^A-Za-z0-9+/=]", b"", self.raw_body)
                return base64.b64decode(data + b"=" * (-len(data) % 4))
            except (binascii.Error, ValueError):
                return self.raw_body
        if cte == "quoted-printable":
            return quopri.decodestring(self.raw_body)
        return self.raw_body

    def text(self) -> str:
        """The decoded body as text in its declared charset (UTF-8/Latin-1 fallback)."""
        data = self.decoded_body()
        charset = self.params.get("charset", "").strip() or "us-ascii"
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            return decode_bytes(data)


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


def _parse_part(raw: bytes, default_type: str, parent: MimePart | None, depth: int) -> MimePart:
    fields, _, body = split_header(raw)
    ctype, params = _parse_content_type(fields, default_type)
    part = MimePart(fields, ctype, params, body, parent=parent)
    if depth > 20:
        return part
    boundary = params.get("boundary")
    if ctype.startswith("multipart/") and boundary:
        child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
        delim = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary.encode("utf-8", "replace"))
                           + rb"(--)?[ \t]*(?=\r?\n|$)")
        pieces: list[tuple[int, int, bool]] = [(m.start(), m.end(), bool(m.group(1)))
                                               for m in delim.finditer(body)]
        if pieces:
            part.preamble = body[:pieces[0][0]]
            for (start, end, closing), nxt in zip(pieces, pieces[1:] + [None]):
                if closing:
                    part.epilogue = body[end:]
                    break
                chunk_start = end + (2 if body[end:end + 2] == b"\r\n" else 1)
                chunk_end = nxt[0] if nxt else len(body)
                part.children.append(
                    _parse_part(body[chunk_start:chunk_end], child_default, part, depth + 1))
    elif ctype == "message/rfc822":
        part.children.append(_parse_part(body, "text/plain", part, depth + 1))
    return part


@dataclass(eq=False)
class Message:
    """A parsed message (immutable from the tests' point of view).

    Attributes:
        raw: the message bytes as received.
        fields: the top-level header fields in order.
        body: the raw body bytes (after the empty line).
    """

    raw: bytes
    fields: list[HeaderField]
    body: bytes

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
        """The MIME structure (parsed on first use)."""
        return _parse_part(self.raw, "text/plain", None, 0)

    def with_fields(self, fields: list[HeaderField]) -> Message:
        """A copy with a different header (editheader, RFC 5293)."""
        head = b"".join(f.name.encode("utf-8") + b":" + f.raw for f in fields)
        return Message(head + b"\r\n" + self.body, list(fields), self.body)


def parse_message(raw: bytes) -> Message:
    """Parse a message for Sieve evaluation; never raises on malformed input.

    Args:
        raw: the message bytes as received (CRLF or bare LF).

    Returns:
        The parsed `Message`.
    """
    data = bytes(raw)
    fields, _, body = split_header(data)
    return Message(data, fields, body)


__all__ = ["Message", "MimePart", "HeaderField", "parse_message", "decode_rfc2047",
           "decode_bytes", "email"]
