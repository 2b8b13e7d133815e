"""date and currentdate (RFC 5260 §4, §5) with index (§6): parsing, zones, parts, warnings.

Expected values were checked against Pigeonhole 0.5.19's sieve-test where it is lenient
(two-digit years, unknown zones, second 60).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mda.sieve import Environment, compile_script
from mda.sieve.extensions.date import parse_date, parse_zone
from tests.sieve.helpers import refused, run, stores

REQ = 'require ["date", "variables", "fileinto", "index", "relational", ' \
      '"comparator-i;ascii-numeric"];\n'


def message(*dates: str, name: str = "Date") -> bytes:
    head = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: s\r\n"
    for value in dates:
        head += f"{name}: {value}\r\n".encode()
    return head + b"\r\nbody\r\n"


def part(part_name: str, msg: bytes, *, zone: str = ':zone "+0000"', header: str = "date",
         environment: Environment | None = None) -> str | None:
    """The value of one date part, via :matches "*" and a fileinto of ${1}."""
    script = (REQ + f'if date {zone} :matches "{header}" "{part_name}" "*" '
              '{ fileinto "v:${1}"; }')
    names = stores(script, msg, environment=environment)
    found = [n[2:] for n in names if n.startswith("v:")]
    return found[0] if found else None


@pytest.mark.parametrize("text, std11", [
    ("Tue, 01 Mar 2022 10:15:00 +0100", "Tue, 01 Mar 2022 10:15:00 +0100"),
    ("Tue, 01 Mar 22 10:15:00 +0100", "Tue, 01 Mar 2022 10:15:00 +0100"),
    ("1 Mar 69 10:15 +0000", "Fri, 01 Mar 2069 10:15:00 +0000"),
    ("1 Mar 70 10:15 +0000", "Sun, 01 Mar 1970 10:15:00 +0000"),
    ("01 Mar 2022 10:15 EST", "Tue, 01 Mar 2022 10:15:00 -0500"),
    ("Tue, 1 mar 2022 10:15:00 GMT", "Tue, 01 Mar 2022 10:15:00 +0000"),
    ("Tue, 01 Mar 2022 10:15:00 +0100 (CET)", "Tue, 01 Mar 2022 10:15:00 +0100"),
    ("Fri, 01 Mar 99 10:15:00 Z", "Mon, 01 Mar 1999 10:15:00 +0000"),  # weekday recomputed
    ("Tue, 01 Mar 2022 10:15:00", "Tue, 01 Mar 2022 10:15:00 +0000"),  # no zone
    ("Tue, 01 Mar 2022 10:15:00 CEST", "Tue, 01 Mar 2022 10:15:00 +0000"),  # unknown zone
    ("Tue,01 Mar 2022 10:15:60 +0000", "Tue, 01 Mar 2022 10:15:59 +0000"),  # leap second
    ("Tue, 01 Mar 2022 10.15.00 +0000", "Tue, 01 Mar 2022 10:15:00 +0000"),
    ("Tue, 01 March 2022 10:15:00 +0000", "Tue, 01 Mar 2022 10:15:00 +0000"),
    ("Tue, 01 Mar 2022 10:15:00 +0199", "Tue, 01 Mar 2022 10:15:00 +0239"),
    ("Tue, 01 Mar 2022 10:15:00 A", "Tue, 01 Mar 2022 10:15:00 +0100"),
    ("Tue, 01 Mar 2022 10:15:00 X", "Tue, 01 Mar 2022 10:15:00 -1100"),
])
def test_original_zone_std11(text: str, std11: str) -> None:
    assert part("std11", message(text), zone=":originalzone") == std11


@pytest.mark.parametrize("text", [
    "Tue, 31 Feb 2022 10:15:00 +0000",  # no such day
    "2022-03-01T10:15:00Z",  # not RFC 5322
    "Tue, 01 Mar 122 10:15:00 +0000",  # three-digit year
    "Tue, 01 Mar 0999 10:15:00 +0000",
    "Tue, 01 Mar 2022 25:15:00 +0000",
    "Tue, 01 Mar 2022 9:5:00 +0000",
    "",
    "garbage",
])
def test_invalid_dates_make_the_test_false(text: str) -> None:
    assert parse_date(text) is None
    assert part("year", message(text)) is None


def test_every_date_part() -> None:
    msg = message("Sat, 31 Dec 2022 23:59:58 +0000")
    expected = {"year": "2022", "month": "12", "day": "31", "date": "2022-12-31",
                "julian": "59944", "hour": "23", "minute": "59", "second": "58",
                "time": "23:59:58", "iso8601": "2022-12-31T23:59:58Z",
                "std11": "Sat, 31 Dec 2022 23:59:58 +0000", "zone": "+0000", "weekday": "6"}
    for name, value in expected.items():
        assert part(name, msg) == value, name
    assert part("WeekDay", msg) == "6"  # date-part names are case-insensitive


def test_zone_conversion_crosses_the_day() -> None:
    msg = message("Wed, 02 Mar 2022 03:30:00 +0000")
    assert part("iso8601", msg, zone=':zone "-0800"') == "2022-03-01T19:30:00-08:00"
    assert part("weekday", msg, zone=':zone "-0800"') == "2"
    assert part("zone", msg, zone=':zone "+0530"') == "+0530"
    assert part("std11", msg, zone=':zone "+0530"') == "Wed, 02 Mar 2022 09:00:00 +0530"


def test_zone_digits_are_hours_and_minutes_without_range_check() -> None:
    assert parse_zone("+0160") == 120
    assert parse_zone("-0130") == -90
    assert parse_zone("0100") is None and parse_zone("+01") is None
    msg = message("Tue, 01 Mar 2022 10:15:00 +0100")
    assert part("zone", msg, zone=':zone "+0160"') == "+0200"


def test_no_zone_means_the_local_time_zone() -> None:
    msg = message("Tue, 01 Mar 2022 10:15:00 +0100")
    utc = Environment(timezone="UTC")
    assert part("time", msg, zone="", environment=utc) == "09:15:00"
    berlin = Environment(timezone="Europe/Berlin")
    assert part("iso8601", msg, zone="", environment=berlin) == "2022-03-01T10:15:00+01:00"
    summer = message("Fri, 01 Jul 2022 10:15:00 +0000")
    assert part("zone", summer, zone="", environment=berlin) == "+0200"  # DST at that date
    fixed = Environment(timezone="-0300")
    assert part("hour", msg, zone="", environment=fixed) == "06"


def test_unknown_local_zone_falls_back_to_utc_with_a_warning() -> None:
    script = REQ + 'if date :matches "date" "zone" "*" { fileinto "v:${1}"; }'
    result = run(script, message("Tue, 01 Mar 2022 10:15:00 +0100"),
                 environment=Environment(timezone="Mars/Olympus"))
    assert result.actions[0].mailbox == "v:+0000"
    assert any("Mars/Olympus" in w for w in result.warnings)


def test_invalid_zone_is_a_warning_and_uses_local_time() -> None:
    script = REQ + 'if date :zone "0100" :matches "date" "zone" "*" { fileinto "v:${1}"; }'
    program = compile_script(script)
    assert any(":zone" in w for w in program.warnings)
    result = run(script, message("Tue, 01 Mar 2022 10:15:00 +0100"),
                 environment=Environment(timezone="+0200"))
    assert result.actions[0].mailbox == "v:+0200"
    assert result.errors == ()
    computed = REQ + 'set "z" "bad"; if date :zone "${z}" :matches "date" "zone" "*" ' \
                     '{ fileinto "v:${1}"; }'
    result = run(computed, message("Tue, 01 Mar 2022 10:15:00 +0100"))
    assert result.actions[0].mailbox == "v:+0000"
    assert any("invalid :zone" in w for w in result.warnings)


def test_unknown_date_part_is_a_warning_and_false() -> None:
    script = REQ + 'if date :matches "date" "bogus" "*" { fileinto "yes"; } ' \
                   'else { fileinto "no"; }'
    assert any("bogus" in w for w in compile_script(script).warnings)
    assert stores(script, message("Tue, 01 Mar 2022 10:15:00 +0100")) == ["no"]
    computed = REQ + 'set "p" "bogus"; if date :matches "date" "${p}" "*" ' \
                     '{ fileinto "yes"; } else { fileinto "no"; }'
    result = run(computed, message("Tue, 01 Mar 2022 10:15:00 +0100"))
    assert [a.mailbox for a in result.actions] == ["no"]
    assert any("bogus" in w for w in result.warnings)


def test_first_occurrence_unless_index() -> None:
    msg = message("Tue, 01 Mar 2022 10:00:01 +0000", "Tue, 01 Mar 2022 10:00:02 +0000",
                  "Tue, 01 Mar 2022 10:00:03 +0000", name="X-Stamp")
    assert part("second", msg, header="x-stamp") == "01"
    for index, expected in ((1, "01"), (2, "02"), (3, "03")):
        assert part("second", msg, header="x-stamp",
                    zone=f':zone "+0000" :index {index}') == expected
    assert part("second", msg, header="x-stamp", zone=':index 1 :last') == "03"
    assert part("second", msg, header="x-stamp", zone=':index 4') is None


def test_index_skips_to_a_parseable_occurrence_only_when_asked() -> None:
    msg = message("not a date", "Tue, 01 Mar 2022 10:00:02 +0000", name="X-Stamp")
    assert part("second", msg, header="x-stamp") is None
    assert part("second", msg, header="x-stamp", zone=":index 2") == "02"


def test_received_uses_the_date_after_the_last_semicolon() -> None:
    msg = message("from a by b; id x; Tue, 01 Mar 2022 10:15:00 +0100", name="Received")
    assert part("date", msg, header="received", zone=":originalzone") == "2022-03-01"
    no_date = message("from a by b", name="Received")
    assert part("date", no_date, header="received") is None


def test_missing_header_is_false() -> None:
    script = REQ + 'if date :matches "date" "year" "*" { fileinto "yes"; } ' \
                   'else { fileinto "no"; }'
    assert stores(script, message()) == ["no"]


def test_relational_value_on_dates() -> None:
    msg = message("Tue, 01 Mar 2022 10:15:00 +0100")
    script = REQ + '''
if date :zone "+0000" :value "ge" "date" "date" "2022-01-01" { fileinto "After2022"; }
if date :zone "+0000" :value "lt" "date" "date" "2022-03-01" { fileinto "Wrong"; }
if date :zone "+0000" :value "lt" "date" "time" "12:00:00" { fileinto "Morning"; }
if date :count "eq" :comparator "i;ascii-numeric" "date" "year" "1" { fileinto "One"; }
'''
    assert stores(script, msg) == ["After2022", "Morning", "One"]


NOW = datetime(2024, 2, 29, 23, 30, 5, tzinfo=timezone.utc)


def current(part_name: str, zone: str = "", now: datetime | None = NOW,
            tz: str = "UTC") -> str | None:
    script = REQ + f'if currentdate {zone} :matches "{part_name}" "*" {{ fileinto "v:${{1}}"; }}'
    names = stores(script, environment=Environment(now=now, timezone=tz))
    found = [n[2:] for n in names if n.startswith("v:")]
    return found[0] if found else None


def test_currentdate_uses_the_environment_time() -> None:
    assert current("iso8601") == "2024-02-29T23:30:05Z"
    assert current("date", ':zone "+0100"') == "2024-03-01"
    assert current("julian") == "60369"
    assert current("weekday") == "4"
    assert current("hour", tz="Asia/Kolkata") == "05"
    other = NOW.astimezone(timezone(timedelta(hours=-5)))  # the zone of `now` is irrelevant
    assert current("time", now=other) == "23:30:05"
    assert current("zone", ':zone "-0500"', now=other) == "-0500"


def test_currentdate_without_a_known_time_is_false() -> None:
    assert current("year", now=None) is None


def test_compile_errors() -> None:
    for bad in ('if currentdate :originalzone "year" "2022" { stop; }',
                'if date :zone "+0100" :originalzone "date" "year" "2022" { stop; }',
                'if date "Bad Name" "year" "2022" { stop; }',
                'if date :index 0 "date" "year" "2022" { stop; }',
                'if date "date" "year" { stop; }'):
        refused(REQ + bad)
    refused('if currentdate "year" "2022" { stop; }', "missing-require")
