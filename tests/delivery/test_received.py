"""The message as delivery parses it for Sieve (`parse_received`): the same as
`parse_message` in every attribute, without copying the body up front."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mda.delivery.deliverer import _prepare, parse_received
from mda.delivery.headers import normalize_line_endings
from mda.sieve import Message, parse_message
from mda.sieve.message import HeaderField

MESSAGES = [
    b"",
    b"\r\n",
    b"\r\n\r\n",
    b"\r\nbody only\r\n",
    b"\r\nbody without a final line break",
    b"Subject: no empty line\r\nbody text\r\n",
    b"Subject: hi\r\n",
    b"Subject: hi\r\n\r\n",
    b"Subject: hi\r\n\r\nbody\r\n\r\nmore\r\n",
    b"Subject: folded\r\n continued\r\n\tagain\r\nTo: a@b\r\n\r\nbody\r\n",
    b"Subject: x\r\nnot a field line\r\nTo: a@b\r\n\r\nbody\r\n",
    b" leading continuation\r\nSubject: x\r\n\r\nb\r\n",
    b"From: a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain\r\n\r\nneedle\r\n--b--\r\n",
]


def assert_same(parsed: Message, expected: Message) -> None:
    assert parsed.raw == expected.raw and parsed.size == expected.size
    assert parsed.fields == expected.fields
    assert parsed.body == expected.body
    assert [p.raw_body for p in [parsed.mime, *parsed.mime.children]] == \
        [p.raw_body for p in [expected.mime, *expected.mime.children]]
    for name in ("subject", "to", "from", "content-type"):
        assert parsed.header_values(name) == expected.header_values(name)


@pytest.mark.parametrize("raw", MESSAGES)
def test_the_same_as_parse_message(raw: bytes) -> None:
    assert_same(parse_received(raw), parse_message(raw))


_LINES = st.sampled_from([b"Subject: x", b"To: a@b.example", b" folded", b"\tfolded",
                          b"", b"body text", b"X-Empty:", b":", b"a"])


@given(st.lists(_LINES, max_size=12).map(lambda lines: b"\r\n".join(lines)),
       st.booleans())
def test_the_same_as_parse_message_for_any_line_sequence(raw: bytes, final_crlf: bool) -> None:
    raw += b"\r\n" if final_crlf else b""
    assert_same(parse_received(raw), parse_message(raw))


@given(st.lists(_LINES, max_size=12).map(lambda lines: b"\r\n".join(lines) + b"\r\n"),
       st.lists(st.tuples(st.sampled_from(["X-A", "Subject"]), st.sampled_from(
           [b" new\r\n", b" folded\r\n two\r\n"])), max_size=3))
def test_editheader_versions_are_the_same_bytes(raw: bytes,
                                                fields: list[tuple[str, bytes]]) -> None:
    new = [HeaderField(name, value) for name, value in fields]
    expected = parse_message(raw)
    edited = parse_received(raw).with_fields(expected.fields + new)
    assert_same(edited, expected.with_fields(expected.fields + new))
    assert_same(edited.with_fields(new), expected.with_fields(expected.fields + new)
                .with_fields(new))


def test_crlf_clean_data_is_parsed_without_a_copy() -> None:
    raw = b"Subject: large\r\n\r\n" + b"x" * 76 * 1000 + b"\r\n"
    normalized, message = _prepare(raw)
    assert normalized is raw and message.raw is raw
    assert "body" not in vars(message)  # not sliced off until a test asks for it
    assert message.size == len(raw)
    assert message.header_values("subject") == ["large"]
    assert message.body == raw[len(b"Subject: large\r\n\r\n"):]


def test_bare_line_feeds_are_normalised_before_parsing() -> None:
    raw = b"Subject: lf\n\nline\nline\r\n"
    normalized, message = _prepare(raw)
    assert normalized == normalize_line_endings(raw) == b"Subject: lf\r\n\r\nline\r\nline\r\n"
    assert_same(message, parse_message(normalized))
