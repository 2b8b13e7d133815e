"""editheader (RFC 5293): addheader, deleteheader, protected fields, and which version of the
message each action stores (checked against Pigeonhole 0.5.19 where it is RFC-consistent)."""

from __future__ import annotations

import pytest

from mda.sieve import (Environment, FileInto, Keep, Redirect, compile_script,
                       parse_message)
from mda.sieve.extensions.editheader import field_body
from mda.sieve.message import HeaderField
from tests.sieve.helpers import refused, run, stores

REQ = 'require ["editheader", "fileinto", "variables", "index", "relational", "regex", ' \
      '"copy", "comparator-i;ascii-numeric"];\n'
MSG = (b"Received: from relay by mx; Tue, 01 Mar 2022 10:15:00 +0100\r\n"
       b"Auto-Submitted: auto-generated\r\n"
       b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n"
       b"X-L: one\r\nX-L: two\r\nX-L: three\r\nX-L: two\r\n\r\nbody\r\n")


def names(message: bytes) -> list[str]:
    return [f.name for f in parse_message(message).fields]


def labels(result) -> list[str]:
    assert result.message is not None
    return result.message.header_values("x-l")


def test_addheader_goes_first_and_last_goes_last() -> None:
    result = run(REQ + 'addheader "X-New" "1"; addheader :last "X-End" "2";', MSG)
    assert result.message is not None
    assert result.message.raw.startswith(b"X-New: 1\r\nReceived: from relay")
    assert result.message.raw.endswith(b"X-L: two\r\nX-End: 2\r\n\r\nbody\r\n")
    assert names(result.message.raw) == ["X-New", *names(MSG), "X-End"]


def test_later_tests_see_the_change() -> None:
    script = REQ + '''
addheader "Subject" "[tagged]";
if header :count "eq" :comparator "i;ascii-numeric" "subject" "2" { fileinto "Two"; }
if header :index 1 "subject" "[tagged]" { fileinto "FirstIsNew"; }
deleteheader "x-l";
if not exists "x-l" { fileinto "Gone"; }
if address :domain :matches "from" "*" { addheader "X-Sender-Domain" "${1}"; }
if header :is "x-sender-domain" "example.org" { fileinto "Tagged"; }
'''
    assert stores(script, MSG) == ["FirstIsNew", "Gone", "Tagged", "Two"]


def test_each_action_stores_the_message_as_it_was_then() -> None:
    script = REQ + '''
fileinto :copy "Before";
addheader "X-A" "1";
fileinto :copy "After";
redirect :copy "carol@example.net";
fileinto :copy "Before";
deleteheader "x-a";
addheader "X-B" "2";
'''
    result = run(script, MSG)
    by_box = {a.mailbox: a for a in result.actions if isinstance(a, FileInto)}
    assert by_box["Before"].message is None  # merged into the first: as received
    assert by_box["After"].message is not None
    assert by_box["After"].message.header_values("x-a") == ["1"]
    (redirect,) = [a for a in result.actions if isinstance(a, Redirect)]
    assert redirect.message is by_box["After"].message
    (keep,) = [a for a in result.actions if isinstance(a, Keep)]
    assert keep.implicit and keep.message is result.message
    assert result.message is not None
    assert result.message.header_values("x-a") == []
    assert result.message.header_values("x-b") == ["2"]
    assert FileInto("After", copy=True) == by_box["After"]  # the snapshot is not part of equality


def test_unchanged_message_has_no_snapshots() -> None:
    result = run(REQ + 'fileinto "A"; keep;', MSG)
    assert result.message is None
    assert all(getattr(a, "message", None) is None for a in result.actions)


def test_a_runtime_error_drops_the_edits() -> None:
    result = run(REQ + 'addheader "X-A" "1"; set "n" "bad name"; addheader "${n}" "x";', MSG)
    assert result.errors and "not a valid header field name" in result.errors[0]
    assert result.actions == (Keep(implicit=True),)
    assert result.message is None and result.actions[0].message is None


def test_protected_fields_are_left_alone() -> None:
    script = REQ + '''
deleteheader "received"; deleteheader "Auto-Submitted"; addheader "X-Sieve-Redirected-From" "x";
deleteheader "subject"; addheader "Received" "from fake";
'''
    program = compile_script(script)
    assert sum("protected" in w for w in program.warnings) == 3
    result = run(script, MSG)
    assert result.errors == ()
    assert sum("not permitted" in w for w in result.warnings) == 3
    message = result.message
    assert message is not None
    assert message.header_values("received") == [
        "from fake", "from relay by mx; Tue, 01 Mar 2022 10:15:00 +0100"]
    assert message.header_values("auto-submitted") == ["auto-generated"]
    assert not message.has_header("x-sieve-redirected-from")
    assert not message.has_header("subject")


def test_configured_protection_but_subject_stays_editable() -> None:
    env = Environment(editheader_forbid_add=("X-Verified", "Subject"),
                      editheader_forbid_delete=("x-l", "SUBJECT"))
    result = run(REQ + 'addheader "X-Verified" "yes"; deleteheader "X-L"; '
                 'deleteheader "subject"; addheader "subject" "new";', MSG, environment=env)
    assert result.message is not None
    assert not result.message.has_header("x-verified")
    assert len(result.message.header_values("x-l")) == 4
    assert result.message.header_values("subject") == ["new"]


def test_non_ascii_values_are_encoded_words() -> None:
    result = run(REQ + 'addheader "X-Long" "ü ünïcödé value";', MSG)
    assert result.message is not None
    assert result.message.raw.startswith(b"X-Long: =?utf-8?b?w7wgw7xuw69jw7Zkw6k=?= value\r\n")
    assert result.message.header_values("x-long") == ["ü ünïcödé value"]
    long_text = "Grüße " * 40
    body = field_body("X-T", long_text.strip())
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))
    assert HeaderField("X-T", body).value == long_text.strip()


def test_long_values_fold_at_spaces_and_unfold_exactly() -> None:
    value = " ".join(f"word{i:03d}" for i in range(40))
    raw = field_body("X-Long", value)
    lines = raw.split(b"\r\n")
    assert len(lines) > 2 and all(len(line) + 7 <= 78 for line in lines[:1])
    assert all(len(line) <= 78 for line in lines)
    assert HeaderField("X-Long", raw).value == value
    assert field_body("X", "x" * 100) == b" " + b"x" * 100 + b"\r\n"  # no space: no fold


def test_line_breaks_in_values_become_folds() -> None:
    script = REQ + 'addheader "X-A" text:\na\nb\n.\n;'
    result = run(script, MSG)
    assert result.message is not None
    assert result.message.raw.startswith(b"X-A: a\r\n\tb\r\nReceived:")
    assert result.message.header_values("x-a") == ["a\tb"]


def test_value_limits() -> None:
    big = run(REQ + f'addheader "X-Big" "{"x" * 2049}";', MSG)
    assert big.errors and "2048 bytes" in big.errors[0]
    ok = run(REQ + f'addheader "X-Big" "{"x" * 2048}";', MSG)
    assert ok.errors == ()
    roomy = run(REQ + f'addheader "X-Big" "{"x" * 2049}";', MSG,
                environment=Environment(editheader_max_header_size=4096))
    assert roomy.errors == ()
    refused('require ["editheader", "encoded-character"]; addheader "X-A" "a${hex:00}b";')


@pytest.mark.parametrize("command, left", [
    ('deleteheader "x-l";', []),
    ('deleteheader :matches "x-l" "t*";', ["one"]),
    ('deleteheader :contains "x-l" ["hre", "ne"];', ["two", "two"]),
    ('deleteheader :regex "x-l" "^t(w|h)";', ["one"]),
    ('deleteheader :is "x-l" "TWO";', ["one", "three"]),  # i;ascii-casemap by default
    ('deleteheader :comparator "i;octet" :is "x-l" "TWO";', ["one", "two", "three", "two"]),
    ('deleteheader :index 2 "x-l";', ["one", "three", "two"]),
    ('deleteheader :index 2 "x-l" "three";', ["one", "two", "three", "two"]),
    ('deleteheader :index 3 "x-l" "three";', ["one", "two", "two"]),
    ('deleteheader :last :index 1 "x-l";', ["one", "two", "three"]),
    ('deleteheader :last :index 1 :contains "x-l" "w";', ["one", "two", "three"]),
    ('deleteheader :index 9 "x-l";', ["one", "two", "three", "two"]),
    ('deleteheader :index 0 "x-l";', ["one", "two", "three", "two"]),  # as Pigeonhole
    ('deleteheader :value "eq" "x-l" "two";', ["one", "three"]),
    ('deleteheader "x-nothing";', ["one", "two", "three", "two"]),
])
def test_deleteheader(command: str, left: list[str]) -> None:
    result = run(REQ + command + ' addheader "X-Mark" "1";', MSG)
    assert result.errors == ()
    assert labels(result) == left


def test_deleteheader_sets_match_variables() -> None:
    assert stores(REQ + 'deleteheader :matches "x-l" "t*"; fileinto "m${1}";', MSG) == ["mwo"]
    assert stores(REQ + 'deleteheader :regex "x-l" "^t(w)o$"; fileinto "m${1}";', MSG) == \
        ["mw"]


def test_compile_errors() -> None:
    for bad in ('addheader "Bad Name" "x";', 'deleteheader "Bad Name";',
                'deleteheader :last "x-l";', 'addheader "X-A";', 'deleteheader;',
                'deleteheader :count "eq" "x-l" "1";', 'addheader :index 1 "X-A" "b";',
                'deleteheader "x-l" 1;'):
        refused(REQ + bad)
    refused('addheader "X-A" "b";', "missing-require")
    compile_script('require "editheader"; deleteheader :index 1 "x-l";')  # no "index" needed


def test_computed_invalid_name_for_deleteheader_is_a_runtime_error() -> None:
    result = run(REQ + 'set "n" "a:b"; deleteheader "${n}";', MSG)
    assert result.errors and result.actions == (Keep(implicit=True),)
