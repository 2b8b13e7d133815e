"""The MIME structure parsed by offsets (`parse_entity`) against the previous parser, which
sliced every body out of the message: same parts, types, parameters, bodies, preambles,
epilogues, decoded bodies and text, whatever the line endings, boundaries and encodings,
and with the transfer decoding split into chunks of any size."""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mda.sieve import message as message_module
from mda.sieve.message import (
    HeaderField,
    MimePart,
    _parse_content_type,
    decode_bytes,
    parse_message,
    split_header,
)


# -- the previous parser (before offsets), kept as the reference ---------------------------

class OldPart:
    def __init__(self, fields: list[HeaderField], ctype: str, params: dict[str, str],
                 raw_body: bytes) -> None:
        self.fields, self.content_type, self.params = fields, ctype, params
        self.raw_body = raw_body
        self.children: list[OldPart] = []
        self.preamble = b""
        self.epilogue = b""

    def decoded_body(self) -> bytes:
        values = [f.value for f in self.fields if f.name.lower() == "content-transfer-encoding"]
        cte = (values or ["7bit"])[0].strip().lower()
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
        data = self.decoded_body()
        charset = self.params.get("charset", "").strip() or "us-ascii"
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            return decode_bytes(data)


def old_parse(raw: bytes, default_type: str = "text/plain", depth: int = 0) -> OldPart:
    fields, _, body = split_header(raw)
    ctype, params = _parse_content_type(fields, default_type)
    part = OldPart(fields, ctype, params, body)
    if depth > 20:
        return part
    boundary = params.get("boundary")
    if ctype.startswith("multipart/") and boundary:
        child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
        delim = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary.encode("utf-8", "replace"))
                           + rb"(--)?[ \t]*(?=\r?\n|$)")
        pieces = [(m.start(), m.end(), bool(m.group(1))) for m in delim.finditer(body)]
        if pieces:
            part.preamble = body[:pieces[0][0]]
            for (_, end, closing), nxt in zip(pieces, pieces[1:] + [None]):
                if closing:
                    part.epilogue = body[end:]
                    break
                chunk_start = end + (2 if body[end:end + 2] == b"\r\n" else 1)
                chunk_end = nxt[0] if nxt else len(body)
                part.children.append(old_parse(body[chunk_start:chunk_end], child_default,
                                               depth + 1))
    elif ctype == "message/rfc822":
        part.children.append(old_parse(body, "text/plain", depth + 1))
    return part


# -- comparison ----------------------------------------------------------------------------

@contextmanager
def decode_chunk(size: int) -> Iterator[None]:
    saved = message_module.DECODE_CHUNK
    message_module.DECODE_CHUNK = size
    try:
        yield
    finally:
        message_module.DECODE_CHUNK = saved


def assert_same_tree(new: MimePart, old: OldPart) -> None:
    assert new.fields == old.fields
    assert (new.content_type, new.params) == (old.content_type, old.params)
    assert new.raw_body == old.raw_body
    assert bytes(new.body_view()) == old.raw_body
    assert (new.preamble, new.epilogue) == (old.preamble, old.epilogue)
    assert new.decoded_body() == old.decoded_body()
    assert new.text() == old.text()
    assert len(new.children) == len(old.children)
    for child, old_child in zip(new.children, old.children):
        assert child.parent is new
        assert child.buffer is new.buffer  # one buffer, offsets only
        assert_same_tree(child, old_child)


def assert_same(raw: bytes, chunk: int = 1 << 20) -> None:
    message = parse_message(raw)
    assert message.raw is raw
    assert message.body == split_header(raw)[2]
    with decode_chunk(chunk):
        assert_same_tree(message.mime, old_parse(raw))


CASES = {
    "crlf": b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n"
            b"Content-Type: text/plain\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\nepi\r\n",
    "lf": b"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\nContent-Type: text/plain\n"
          b"\none\n--b\n\ntwo\n--b--\nepi\n",
    "mixed line ends": b"Content-Type: multipart/mixed; boundary=b\r\n\n--b\n\r\none\r\n--b\r\n"
                       b"\ntwo\n--b--",
    "boundary first in body": b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"
                              b"x\r\n--b--\r\n",
    "no final boundary": b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"
                         b"last part runs to the end\r\n",
    "no final line break": b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"
                           b"x\r\n--b",
    "boundary at the very end": b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b",
    "empty parts": b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n"
                   b"\r\n--b--",
    "white space after boundary": b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                                  b"--b \t\r\n\r\nx\r\n--b-- \r\n",
    "not a boundary": b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--bb\r\n--b x\r\n",
    "nested": b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
              b"Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\na\r\n"
              b"--i\r\nContent-Type: text/html\r\n\r\n<b>b</b>\r\n--i--\r\n--o\r\n"
              b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\n\r\ngr\xc3\xbcn\r\n--o--\r\n",
    "digest": b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: m\r\n\r\n"
              b"x\r\n--d--\r\n",
    "base64": b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64"
              b"\r\n\r\n" + base64.encodebytes("grüße ".encode() * 40).replace(b"\n", b"\r\n"),
    "base64 undecodable": b"Content-Transfer-Encoding: base64\r\n\r\nA\r\n",
    "base64 padding inside": b"Content-Transfer-Encoding: base64\r\n\r\nQUJD\r\nQQ==\r\n"
                             b"QUJD\r\n",
    "quoted-printable": b"Content-Type: text/plain; charset=iso-8859-1\r\n"
                        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                        b"gr=FCn =\r\nsoft=3D\r\nlast=",
    "unknown charset": b"Content-Type: text/plain; charset=x-nope\r\n\r\n\xe9t\xe9",
    "utf-16": b"Content-Type: text/plain; charset=utf-16\r\nContent-Transfer-Encoding: "
              b"base64\r\n\r\n" + base64.encodebytes("hello world".encode("utf-16")),
    "no header": b"just a body\r\n",
    "empty": b"",
}


@pytest.mark.parametrize("raw", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("chunk", [1, 3, 4, 7, 1 << 20])
def test_same_as_the_previous_parser(raw: bytes, chunk: int) -> None:
    assert_same(raw, chunk)


def test_deep_nesting_stops_where_it_did() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\n" * 30 + b"Subject: deep\r\n\r\nx"
    assert_same(raw)


# -- generated messages --------------------------------------------------------------------

_EOL = st.sampled_from([b"\r\n", b"\n"])
_TEXT = st.sampled_from([b"", b"text", b"gr\xc3\xbcn", b"\xe9t\xe9", b"=3D=\r\n", b"QUJD",
                         b"QQ==", b"--", b"--b", b"a b", b"\r", b"x\r\ny"])
_HEADERS = st.sampled_from([
    b"", b"Content-Type: text/plain", b"Content-Type: text/html; charset=iso-8859-1",
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable", b"Content-Type: application/x-y",
    b"Content-Type: message/rfc822", b"Content-Type: text/plain; charset=utf-16",
    b"Content-Transfer-Encoding: base64",
])


@st.composite
def entities(draw: st.DrawFn, depth: int = 0) -> bytes:
    eol = draw(_EOL)
    if depth < 3 and draw(st.booleans()):
        boundary = draw(st.sampled_from([b"b", b"b2", b"=_x"]))
        head = b"Content-Type: multipart/" + draw(st.sampled_from([b"mixed", b"digest"])) \
            + b'; boundary="' + boundary + b'"' + eol + eol
        out = head + draw(_TEXT)
        for _ in range(draw(st.integers(0, 3))):
            out += eol + b"--" + boundary + draw(st.sampled_from([b"", b" ", b"x"])) + eol
            out += draw(entities(depth + 1))
        if draw(st.booleans()):
            out += eol + b"--" + boundary + b"--" + draw(st.sampled_from([b"", eol]))
            out += draw(_TEXT)
        return out
    header = draw(_HEADERS)
    body = b"".join(draw(st.lists(_TEXT, max_size=4)))
    if b"base64" in header and draw(st.booleans()):
        body = base64.encodebytes(body * draw(st.integers(1, 20))).replace(b"\n", eol)
    return (header + eol if header else b"") + eol + body + draw(st.sampled_from([b"", eol]))


@settings(max_examples=400, deadline=None)
@given(entities(), st.sampled_from([1, 2, 5, 64, 1 << 20]))
def test_generated_messages_are_parsed_the_same(raw: bytes, chunk: int) -> None:
    assert_same(raw, chunk)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([1, 3, 1 << 20]))
def test_any_bytes_as_a_base64_or_qp_body(body: bytes, chunk: int) -> None:
    for cte in (b"base64", b"quoted-printable"):
        assert_same(b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body, chunk)


def test_a_large_part_is_not_copied_until_asked() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nsmall\r\n--b\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(b"x" * 300_000).replace(b"\n", b"\r\n") + b"--b--\r\n")
    message = parse_message(raw)
    small, large = message.mime.children
    assert large.buffer is raw and small.buffer is raw
    assert "body" not in vars(message)
    assert bytes(small.body_view()) == b"small"
    with decode_chunk(4096):
        assert large.text() == "x" * 300_000


# -- the body test's :contains on the decoded string ---------------------------------------

_CHARS = st.sampled_from(list("aAbBzZ09 -*?\\\r\nÄäéİıſKk€\U0001F600") + ["\udce9"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_CHARS, max_size=12).map("".join), st.lists(_CHARS, max_size=4).map("".join),
       st.sampled_from(["i;octet", "i;ascii-casemap"]))
def test_contains_on_strings_is_the_comparators(value: str, key: str, name: str) -> None:
    from mda.sieve.extensions import body
    from mda.sieve.matching import COMPARATORS

    comparator = COMPARATORS[name]
    saved = body.LARGE_VALUE, body.WINDOW
    body.LARGE_VALUE, body.WINDOW = 0, 3  # every value is large, windows of 3
    try:
        found = body._contains(comparator, value, [key])
    finally:
        body.LARGE_VALUE, body.WINDOW = saved
    assert found in (None, comparator.contains(value, key))
    if found is None:
        assert "\udce9" in value + key


@pytest.mark.parametrize("transform,key,expected", [
    (":raw", "needle", True), (":text", "needle", False), (":text", "GRÜN", False),
    (":text", "GRüN", True), (':content "application"', "needle", False),
    (':content "multipart"', "needle", True), (':content "text/html"', "<B>", True)])
def test_body_test_on_parts_by_offsets(transform: str, key: str, expected: bool) -> None:
    from mda.sieve import Envelope, compile_script, evaluate

    raw = CASES["nested"].replace(b"--o--\r\n", b"--o--\r\nNEEDLE in the epilogue\r\n")
    script = ('require ["body", "fileinto"];\n'
              f'if body {transform} :contains "{key}" {{ fileinto "F"; }}\n')
    result = evaluate(compile_script(script), parse_message(raw),
                      Envelope("", "u@example.com"))
    assert any(getattr(a, "mailbox", None) == "F" for a in result.actions) is expected
