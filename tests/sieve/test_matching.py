"""Match types and comparators (RFC 5228 §2.7, RFC 4790)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mda.sieve.matching import COMPARATORS, glob, parse_pattern

OCTET = COMPARATORS["i;octet"]
CASEMAP = COMPARATORS["i;ascii-casemap"]
NUMERIC = COMPARATORS["i;ascii-numeric"]


@pytest.mark.parametrize("value,pattern,expected", [
    ("report", "*", True),
    ("", "*", True),
    ("", "?", False),
    ("abc", "a?c", True),
    ("abc", "a*", True),
    ("abc", "*c", True),
    ("abc", "*b*", True),
    ("abc", "a*b*c", True),
    ("abc", "a*d", False),
    ("a*c", "a\\*c", True),
    ("abc", "a\\*c", False),
    ("a\\c", "a\\\\c", True),
    ("aaa", "a*a*a*a", False),
    ("aaaa", "a*a*a*a", True),
    ("é", "?", False),      # two octets
    ("é", "??", True),
    ("xay", "*?*", True),
])
def test_matches_octet(value: str, pattern: str, expected: bool) -> None:
    assert (OCTET.matches(value, pattern) is not None) is expected


def test_matches_captures_leftmost_shortest() -> None:
    assert OCTET.matches("foo.bar.baz", "*.*") == ["foo", "bar.baz"]
    assert OCTET.matches("list-x@example.org", "*-?@*") == ["list", "x", "example.org"]


def test_casemap_is_ascii_only() -> None:
    assert CASEMAP.equals("REPORT", "report")
    assert not CASEMAP.equals("GRÜN", "grün")
    assert CASEMAP.contains("Quarterly Report", "REPORT")
    assert not OCTET.contains("Quarterly Report", "REPORT")


@pytest.mark.parametrize("value,key,equal", [("0042", "42", True), ("42abc", "42", True),
                                             ("abc", "def", True), ("abc", "1", False),
                                             ("7", "07", True), ("8", "9", False)])
def test_ascii_numeric_equality(value: str, key: str, equal: bool) -> None:
    # RFC 4790 §9.1.1: non-digits compare as positive infinity, equal to each other
    assert NUMERIC.equals(value, key) is equal


def test_ascii_numeric_has_no_substring_operations() -> None:
    assert not NUMERIC.substring


def _reference(value: bytes, pattern: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex.encode(), value, re.S) is not None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab*?", max_size=8), st.text(alphabet="abc", max_size=12))
def test_glob_agrees_with_a_regex(pattern: str, value: str) -> None:
    got = glob(value.encode(), parse_pattern(pattern, OCTET)) is not None
    assert got == _reference(value.encode(), pattern)


def test_glob_is_fast_on_hostile_patterns() -> None:
    value = "a" * 5000
    pattern = "*a" * 40 + "*b"
    assert OCTET.matches(value, pattern) is None
