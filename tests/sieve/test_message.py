"""parse_message never raises, and header values are unfolded and RFC 2047 decoded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mda.sieve import Envelope, compile_script, evaluate, parse_message
from mda.sieve.message import decode_rfc2047

HOSTILE = [
    b"",
    b"no headers at all, just text\n",
    b"Subject: bare LF\nTo: a@b.c\n\nbody\n",
    b"Subject: \xe9t\xe9 8-bit\r\n\r\nbody",
    b"Subject: nul\x00byte\r\n\r\n\x00\x00",
    b"Subject: folded\r\n  twice\r\n\tand thrice\r\n\r\n",
    b"\r\n\r\nonly body",
    b": empty name\r\nSubject: x\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nbroken",
    b"Subject: =?utf-8?B?not base64!!?= =?bogus?Q?x?=\r\n\r\n",
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_messages_parse_and_evaluate(raw: bytes) -> None:
    message = parse_message(raw)
    program = compile_script('if header :contains "subject" "x" { discard; }\n'
                             'if address :all "to" "*" { keep; }')
    result = evaluate(program, message, Envelope("", "u@example.com"))
    assert result.errors == ()
    _ = message.mime.children  # MIME parsing must not raise either


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_parse(raw: bytes) -> None:
    message = parse_message(raw)
    assert message.size == len(raw)
    for field in message.fields:
        assert isinstance(field.value, str)


def test_unfolding_and_trimming() -> None:
    message = parse_message(b"Subject:   folded\r\n  twice  \r\n\r\n")
    assert message.header_values("SUBJECT") == ["folded  twice"]


def test_bare_lf_header_and_body() -> None:
    message = parse_message(b"Subject: a\nTo: b@c.d\n\nbody\n")
    assert message.header_values("to") == ["b@c.d"]
    assert message.body == b"body\n"


def test_eight_bit_header_is_utf8_or_latin1() -> None:
    assert parse_message("Subject: grün\r\n\r\n".encode()).header_values("subject") == ["grün"]
    assert parse_message(b"Subject: gr\xfcn\r\n\r\n").header_values("subject") == ["grün"]


@pytest.mark.parametrize("encoded,decoded", [
    ("=?UTF-8?B?R3LDvMOfZQ==?=", "Grüße"),
    ("=?iso-8859-1?Q?gr=FCn?=", "grün"),
    ("=?utf-8?q?a_b?= =?utf-8?q?c?=", "a bc"),       # space between words dropped
    ("x =?utf-8?q?a?= y", "x a y"),
    ("=?x-unknown?Q?abc?=", "abc"),                 # unknown charset: raw bytes
    ("=?utf-8?B?###?=", "=?utf-8?B?###?="),          # undecodable: left as written
])
def test_rfc2047(encoded: str, decoded: str) -> None:
    assert decode_rfc2047(encoded) == decoded


def test_multipart_structure() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=XX\r\n\r\npreamble\r\n--XX\r\n"
           b"Content-Type: text/plain\r\n\r\none\r\n--XX\r\nContent-Type: text/html\r\n\r\n"
           b"<b>two</b>\r\n--XX--\r\nepilogue\r\n")
    mime = parse_message(raw).mime
    assert [c.content_type for c in mime.children] == ["text/plain", "text/html"]
    assert mime.children[0].raw_body == b"one"
    assert mime.preamble == b"preamble"
