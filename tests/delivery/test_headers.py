"""The bytes delivery adds: CRLF normalisation and the per-recipient header prefix."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mda.delivery.headers import (
    has_header_section,
    header_prefix,
    normalize_line_endings,
    peer_address,
)

WHEN = datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "normalized"), [
    (b"a\nb\n", b"a\r\nb\r\n"),
    (b"a\r\nb\r\n", b"a\r\nb\r\n"),
    (b"a\rb", b"a\r\nb"),
    (b"a\r\r\nb\n\n", b"a\r\n\r\nb\r\n\r\n"),
    (b"", b""),
    (b"no newline", b"no newline"),
    (b"LF lines\nlast\n\r\n", b"LF lines\r\nlast\r\n"),  # then the DATA terminator
    (b"CRLF lines\r\n\r\n", b"CRLF lines\r\n\r\n"),
    (b"mixed\n\r\nmore\r\n", b"mixed\r\n\r\nmore\r\n"),
])
def test_line_endings(raw: bytes, normalized: bytes) -> None:
    assert normalize_line_endings(raw) == normalized


@given(st.binary(max_size=200))
def test_normalised_text_has_only_crlf_and_is_stable(raw: bytes) -> None:
    out = normalize_line_endings(raw)
    assert out.replace(b"\r\n", b"").count(b"\r") == 0
    assert out.replace(b"\r\n", b"").count(b"\n") == 0
    assert normalize_line_endings(out) == out
    assert out.replace(b"\r\n", b"") == raw.replace(b"\r\n", b"").replace(b"\r", b"").replace(
        b"\n", b"")
    assert out.count(b"\r\n") <= raw.count(b"\n") + raw.count(b"\r")


def _reference(raw: bytes) -> bytes:
    """Normalisation in one regex pass over the whole message."""
    if raw.endswith(b"\n\r\n") and not raw.endswith(b"\r\n\r\n"):
        raw = raw[:-2]
    return re.sub(rb"\r\n|\r|\n", b"\r\n", raw)


@given(st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b"."]), max_size=60)
       .map(b"".join), st.integers(min_value=1, max_value=7))
def test_window_by_window_is_the_same_as_one_pass(raw: bytes, window: int) -> None:
    assert normalize_line_endings(raw, window=window) == _reference(raw)


def test_crlf_clean_data_is_returned_without_a_copy() -> None:
    clean = b"Subject: x\r\n\r\n" + b"line\r\n" * 1000
    assert normalize_line_endings(clean) is clean
    assert normalize_line_endings(clean, window=10) is clean


def test_a_large_message_with_a_few_bare_line_feeds() -> None:
    raw = b"Subject: x\r\n\r\n" + b"line\r\n" * 500_000 + b"bare\n" + b"x\r\n" * 300_000
    out = normalize_line_endings(raw)
    assert out == raw.replace(b"bare\n", b"bare\r\n") and len(out) == len(raw) + 1


def test_prefix_is_dovecot_shaped() -> None:
    prefix = header_prefix(mail_from="ann@example.org", recipient="joe+x@Example.com",
                           helo="mta.example.org", peer="192.0.2.7:40000", hostname="mx.test",
                           queue_id="Q1", received_at=WHEN)
    assert prefix == (b"Return-Path: <ann@example.org>\r\n"
                      b"Delivered-To: joe+x@Example.com\r\n"
                      b"Received: from mta.example.org ([192.0.2.7])\r\n"
                      b"\tby mx.test (mda) with LMTP id Q1\r\n"
                      b"\tfor <joe+x@Example.com>; Wed, 01 May 2024 12:30:15 +0000\r\n")


def test_prefix_for_null_sender_unix_peer_and_no_header_section() -> None:
    prefix = header_prefix(mail_from="", recipient="joe@example.com", helo="", peer="unix",
                           hostname="mx.test", queue_id="Q2", received_at=WHEN,
                           add_empty_line=True)
    assert prefix.startswith(b"Return-Path: <>\r\n")
    assert b"Received: from unknown\r\n" in prefix
    assert prefix.endswith(b"+0000\r\n\r\n")


def test_injected_line_breaks_cannot_forge_headers() -> None:
    prefix = header_prefix(mail_from="a@b\r\nX-Evil: 1", recipient="joe@example.com",
                           helo="h\nX-Evil: 2", peer="192.0.2.7:1", hostname="mx.test",
                           queue_id="Q\r\n", received_at=WHEN)
    assert b"\r\nX-Evil" not in prefix
    assert all(line[:1] in b"RD\t" for line in prefix.split(b"\r\n")[:-1])


@pytest.mark.parametrize(("peer", "ip"), [
    ("192.0.2.7:40000", "192.0.2.7"), ("[2001:db8::1]:25", "2001:db8::1"), ("unix", ""),
    ("", ""),
])
def test_peer_address(peer: str, ip: str) -> None:
    assert peer_address(peer) == ip


@pytest.mark.parametrize(("data", "expected"), [
    (b"Subject: x\r\n\r\nbody", True), (b"\r\nbody only", True), (b"X-A:b\r\n", True),
    (b"just text\r\n", False), (b"", False), (b"From nobody Mon\r\n", False),
    (b":no name\r\n", False),
])
def test_header_section_detection(data: bytes, expected: bool) -> None:
    assert has_header_section(data) is expected
