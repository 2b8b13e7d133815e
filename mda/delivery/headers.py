"""The bytes mda adds to or changes in a message when storing it.

- Line endings are normalised to CRLF (RFC 5322 §2.1: CR and LF only together as CRLF);
  bare LF and lone CR each become CRLF. Nothing else in the message changes.
- Each recipient's copy gets its own header prefix, as Dovecot LMTP writes it:
  `Return-Path` (RFC 5321 §4.4: the envelope sender), `Delivered-To` (the recipient as
  given in RCPT TO) and a `Received` trace field (RFC 5321 §4.4, RFC 5322 §3.6.7).
- A message without a header section (its first line is not a header field) gets an empty
  line after the prefix, so that its text stays the body instead of becoming header.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime

from mda.buffers import presized_buffer

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_WINDOW = 1024 * 1024  # bytes normalised at a time
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def normalize_line_endings(data: bytes, *, window: int = _WINDOW) -> bytes:
    """Turn every bare LF and lone CR into CRLF.

    A client that writes LF-only lines still ends DATA with CRLF.CRLF, whose first CRLF
    ends the last line (RFC 5321 §4.1.1.4), so the data arrives ending in `LF CRLF`. That
    LF already ended the last line: the final CRLF is dropped rather than read as one
    more, empty line.

    Memory: data that already has CRLF line endings only (what an MTA sends over LMTP) is
    recognised by counting, without a copy, and returned as it is. Otherwise it is
    rewritten window by window into one buffer that becomes the result: one new copy, plus
    one rewritten window at a time.

    Args:
        data: the message bytes.
        window: bytes looked at a time when rewriting (at least 1; default 1 MiB).

    Returns:
        The bytes with CRLF line endings only (the same object when nothing changes).
    """
    if _crlf_only(data, 0, len(data)):
        return data
    end = len(data)
    if data.endswith(b"\n\r\n") and not data.endswith(b"\r\n\r\n"):
        end -= 2
    view = memoryview(data)
    out = presized_buffer(_normalized_size(data, end))
    start = 0
    while start < end:
        stop = min(start + window, end)
        if stop < end and data[stop - 1:stop + 1] == b"\r\n":  # keep CR LF together
            stop += 1
        if _crlf_only(data, start, stop):
            out.write(view[start:stop])
        else:
            out.write(_LINE_BREAK.sub(b"\r\n", data[start:stop]))
        start = stop
    return out.getvalue()


def _normalized_size(data: bytes, end: int) -> int:
    """The length of `data[:end]` once every bare LF and lone CR has become CRLF."""
    pairs = data.count(b"\r\n", 0, end)
    return end + (data.count(b"\r", 0, end) - pairs) + (data.count(b"\n", 0, end) - pairs)


def _crlf_only(data: bytes, start: int, stop: int) -> bool:
    """Whether `data[start:stop]` has no bare LF and no lone CR (counted, not copied)."""
    pairs = data.count(b"\r\n", start, stop)
    return data.count(b"\r", start, stop) == pairs and data.count(b"\n", start, stop) == pairs


def has_header_section(data: bytes) -> bool:
    """Whether the message starts with a header field or the empty line ending an empty header."""
    return data.startswith(b"\r\n") or _FIELD_START.match(data) is not None


def _clean(text: str) -> str:
    """One safe header token: control characters (CR, LF, NUL ...) removed."""
    return _UNSAFE.sub("", text)


def _encode(text: str) -> bytes:
    """UTF-8; lone surrogates (undecodable bytes the LMTP layer kept) go back to bytes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def peer_address(peer: str) -> str:
    """The IP address of a peer as the LMTP layer formats it (`"192.0.2.1:2525"`,
    `"[2001:db8::1]:2525"`, `"unix"`); "" when there is none."""
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    host, colon, port = peer.rpartition(":")
    if colon and port.isdigit():
        return host
    return ""


def header_prefix(*, mail_from: str, recipient: str, helo: str, peer: str, hostname: str,
                  queue_id: str, received_at: datetime, add_empty_line: bool = False,
                  protocol: str = "LMTP") -> bytes:
    """The per-recipient header lines put before the shared message bytes.

    Args:
        mail_from: envelope sender ("" for `<>`).
        recipient: RCPT TO address as given.
        helo: the client's LHLO name.
        peer: the client (see `peer_address`).
        hostname: our host name (`MDA_HOSTNAME`).
        queue_id: the transaction id.
        received_at: when DATA ended (aware).
        add_empty_line: append an empty line (for a message without a header section).
        protocol: the Received `with` keyword (RFC 3848 and RFC 6531 §3.7.3 registry:
            `LMTP`, `LMTPS`, `UTF8LMTP`, `UTF8LMTPS`).

    Returns:
        CRLF-terminated header lines (folded under 78 characters where the RFC 5322 §2.1.1
        SHOULD allows; never longer than 998 for sane input).
    """
    sender, rcpt = _clean(mail_from), _clean(recipient)
    ip = _clean(peer_address(peer))
    origin = f"from {_clean(helo) or 'unknown'}" + (f" ([{ip}])" if ip else "")
    lines = [
        f"Return-Path: <{sender}>",
        f"Delivered-To: {rcpt}",
        f"Received: {origin}",
        f"\tby {_clean(hostname)} (mda) with {_clean(protocol)} id {_clean(queue_id)}",
        f"\tfor <{rcpt}>; {format_datetime(received_at)}",
    ]
    prefix = b"".join(_encode(line) + b"\r\n" for line in lines)
    return prefix + b"\r\n" if add_empty_line else prefix
