"""RFC 5322 address lists with groups and comments (RFC 5228 §5.1)."""

from __future__ import annotations

import pytest

from mda.sieve.addresses import Address, parse_address, parse_address_list


@pytest.mark.parametrize("text,expected", [
    ("alice@example.org", ["alice@example.org"]),
    ('"Alice Example" <alice@example.org>', ["alice@example.org"]),
    ("Bob <bob@example.com>, carol@example.net", ["bob@example.com", "carol@example.net"]),
    ("team: a@x.org, B <b@y.org>;, c@z.org", ["a@x.org", "b@y.org", "c@z.org"]),
    ("undisclosed-recipients:;", []),
    ("dave(comment with @ and , inside)@ops(x).example.com", ["dave@ops.example.com"]),
    ('"odd, name" <e@example.com>', ["e@example.com"]),
    ('"quoted local"@example.com', ["quoted local@example.com"]),
    ("<@route.example:f@example.com>", ["f@example.com"]),
    ("", []),
])
def test_parse_address_list(text: str, expected: list[str]) -> None:
    got = [a.all for a in parse_address_list(text) if a is not None]
    assert got == expected


@pytest.mark.parametrize("text", ["no-at-sign", "a@", "@b", "<unclosed@example.com",
                                  "a@b@c", "(unclosed comment a@b.c", "x@.example"])
def test_unparseable_address_gives_none(text: str) -> None:
    assert parse_address_list(text) == [None]


def test_parse_address_parts() -> None:
    assert parse_address("<Bob+Work@Example.COM>") == Address("Bob+Work", "Example.COM")
    assert parse_address("<>") is None
