"""mime (RFC 5703 §4): :mime/:anychild on header, address, exists; :type/:subtype/
:contenttype/:param. Expected values were checked against Pigeonhole's sieve-test."""

from __future__ import annotations

import pytest

from mda.sieve import SieveCompileError, compile_script
from mda.sieve.extensions.mime import content_type_values, parse_params
from tests.sieve.extensions.mime_messages import NESTED, PLAIN
from tests.sieve.helpers import stores

REQ = 'require ["mime", "fileinto", "variables", "relational"];\n'


def test_mime_outside_a_loop_reads_the_top_level_header() -> None:
    assert stores(REQ + 'if header :mime :subtype "content-type" "mixed" { fileinto "Top"; }',
                  NESTED) == ["Top"]
    assert stores(REQ + 'if header :mime :subtype "content-type" "plain" { fileinto "X"; }',
                  NESTED) == ["INBOX"]


@pytest.mark.parametrize(("test", "hit"), [
    ('header :mime :anychild "subject" "inner"', True),       # enclosed message's header
    ('header :mime :anychild "subject" "top"', True),         # the current part counts too
    ('header :mime "subject" "inner"', False),
    ('exists :mime :anychild "content-disposition"', True),
    ('exists "content-disposition"', False),
    ('address :mime :anychild :domain "from" "example.net"', True),
    ('address :mime :domain "from" "example.net"', False),
    ('header :mime :anychild :contenttype "content-type" "text/html"', True),
])
def test_anychild(test: str, hit: bool) -> None:
    assert stores(REQ + f'if {test} {{ fileinto "Hit"; }}', NESTED) == (
        ["Hit"] if hit else ["INBOX"])


def test_param_decodes_rfc2231_and_sets_match_variables() -> None:
    script = REQ + ('if header :mime :anychild :param "filename" :matches '
                    '"content-disposition" "*" { fileinto "F-${1}"; }')
    assert stores(script, NESTED) == ["F-fü.bin"]


def test_missing_parameter_is_one_empty_value() -> None:
    script = REQ + ('if header :mime :param "charset" :count "eq" "content-type" "1" '
                    '{ fileinto "One"; }')
    assert stores(script, NESTED) == ["One"]


def test_no_content_type_field_means_no_value() -> None:
    # no default text/plain: the test looks at fields, and there is none
    assert stores(REQ + 'if header :mime :contenttype "content-type" "text/plain" '
                  '{ fileinto "X"; }', PLAIN) == ["INBOX"]


@pytest.mark.parametrize(("name", "value", "option", "params", "expected"), [
    ("content-type", "Text/PLAIN ; Name=\"A b\" ; Charset=UTF-8", ":type", (), ["Text"]),
    ("content-type", "Text/PLAIN ; Name=\"A b\"", ":subtype", (), ["PLAIN"]),
    ("content-type", "text/plain (comment); charset=us-ascii", ":contenttype", (),
     ["text/plain"]),
    ("content-type", "text", ":type", (), [""]),
    ("content-type", "text/plain/x; q", ":contenttype", (), [""]),
    ("content-type", "a b/c", ":type", (), [""]),
    ("x-other", "text/plain", ":type", (), [""]),
    ("content-type", "text/plain; NAME=a; charset=c; name=b", ":param", ("name", "charset"),
     ["a", "c", "b"]),
    ("content-type", "text/plain; charset=\"x\\\"y\"", ":param", ("charset",), ['x"y']),
    ("content-disposition", "attachment; filename*0=\"a\"; filename*1=\"b.txt\"", ":param",
     ("filename",), ["ab.txt"]),
    ("subject", "hello; charset=x", ":param", ("charset",), [""]),
])
def test_content_type_values(name, value, option, params, expected) -> None:
    assert content_type_values(name, value, option, params) == expected


def test_parse_params_stops_at_garbage() -> None:
    assert parse_params("; a=1; b; c=3") == [("a", "1")]


@pytest.mark.parametrize("script", [
    'if header :param "filename" "content-disposition" "x" { }',
    'if header :mime :type :subtype "content-type" "x" { }',
    'if header :anychild "subject" "x" { }',
    'if exists :mime :type "content-type" { }',
    'if address :mime :param "x" "from" "x" { }',
])
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveCompileError):
        compile_script(REQ + script)


def test_mime_needs_require() -> None:
    with pytest.raises(SieveCompileError) as err:
        compile_script('if header :mime "subject" "x" { }')
    assert err.value.kind == "missing-require"
