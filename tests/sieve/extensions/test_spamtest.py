"""spamtest, spamtestplus and virustest (RFC 5235), configured like Pigeonhole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from mda.config import Settings
from mda.sieve import Environment, compile_script
from mda.sieve.extensions.spamtest import parse_decimal, parse_header_spec
from mda.sieve.extensions.virustest import parse_text_values
from tests.sieve.helpers import refused, stores

CONFIGURED = Environment(spamtest_header=r"X-Spam-Score: score=(-?[0-9]+([.,][0-9]+)?)",
                         spamtest_max=10.0, virustest_header="X-Virus-Scan",
                         virustest_text_values=((1, "clean"), (3, "suspicious"),
                                                (5, "infected")))
REQ = 'require ["spamtestplus", "virustest", "variables", "fileinto", "relational", ' \
      '"comparator-i;ascii-numeric"];\n'


def message(*headers: str) -> bytes:
    head = "From: alice@example.org\r\nTo: bob@example.com\r\n" + "".join(
        f"{h}\r\n" for h in headers)
    return (head + "\r\nbody\r\n").encode()


def value(test: str, *headers: str, environment: Environment = CONFIGURED) -> str:
    script = REQ + f'if {test} :matches "*" {{ fileinto "${{1}}"; }}'
    (mailbox,) = stores(script, message(*headers), environment=environment)
    return mailbox


@pytest.mark.parametrize("header, level, percent", [
    ("score=6.2 tests=CAPS", "6", "62"),
    ("score=9.3", "9", "93"),
    ("score=42", "10", "100"),  # above the maximum: clamped
    ("score=10", "10", "100"),
    ("score=0", "1", "0"),
    ("score=1", "1", "10"),
    ("score=1.2", "2", "12"),
    ("score=-3.5", "1", "0"),  # negative: ratio 0, but tested
    ("score=4,5", "5", "45"),  # a comma is a radix point too
])
def test_spam_levels(header: str, level: str, percent: str) -> None:
    assert value("spamtest", f"X-Spam-Score: {header}") == level
    assert value("spamtest :percent", f"X-Spam-Score: {header}") == percent


@pytest.mark.parametrize("headers", [
    (),  # not scanned
    ("X-Spam-Score: no score here",),  # the regex does not match
    ("X-Spam-Score: score=1234567",),  # more than five digits: not a score
])
def test_untested_is_zero(headers: tuple[str, ...]) -> None:
    assert value("spamtest", *headers) == "0"
    assert value("spamtest :percent", *headers) == "0"


def test_only_the_first_field_counts() -> None:
    assert value("spamtest", "X-Spam-Score: junk", "X-Spam-Score: score=9") == "0"


def test_not_configured_is_always_zero() -> None:
    assert value("spamtest", "X-Spam-Score: score=9", environment=Environment()) == "0"
    assert value("virustest", "X-Virus-Scan: infected", environment=Environment()) == "0"


def test_header_without_regex_is_the_whole_value() -> None:
    env = Environment(spamtest_header="X-Score", spamtest_max=5)
    assert value("spamtest :percent", "X-Score: 2.5", environment=env) == "50"


def test_relational_numeric_comparison() -> None:
    script = REQ + '''
if spamtest :value "ge" :comparator "i;ascii-numeric" "8" { fileinto "Junk"; }
elsif spamtest :value "ge" :comparator "i;ascii-numeric" "4" { fileinto "Maybe"; }
'''
    assert stores(script, message("X-Spam-Score: score=6.2"), environment=CONFIGURED) == \
        ["Maybe"]
    assert stores(script, message("X-Spam-Score: score=8.9"), environment=CONFIGURED) == \
        ["Junk"]


@pytest.mark.parametrize("status, level", [
    ("clean", "1"), ("suspicious", "3"), ("infected", "5"),
    ("Infected", "0"),  # texts compare case-sensitively, as in Pigeonhole
    ("unknown", "0"),
])
def test_virus_levels(status: str, level: str) -> None:
    assert value("virustest", f"X-Virus-Scan: {status}") == level


def test_virustest_missing_header_is_zero() -> None:
    assert value("virustest") == "0"


def test_virus_header_with_regex() -> None:
    env = Environment(virustest_header="X-AV: result=(\\w+)",
                      virustest_text_values=((2, "ok"), (4, "bad")))
    assert value("virustest", "X-AV: scanner 1; result=bad", environment=env) == "4"
    assert value("virustest", "X-AV: scanner 1; result=ok", environment=env) == "2"


def test_compile_rules() -> None:
    compile_script('require "spamtestplus"; if spamtest "1" { stop; }')
    compile_script('require ["spamtest", "relational"]; if spamtest :value "eq" "1" { stop; }')
    for bad, kind in (
        ('if spamtest "1" { stop; }', "missing-require"),
        ('require "spamtest"; if spamtest :percent "1" { stop; }', "missing-require"),
        ('require "spamtest"; if spamtest ["1", "2"] { stop; }', "bad-argument"),
        ('require "virustest"; if virustest :percent "1" { stop; }', "bad-argument"),
        ('require "spamtest"; if virustest "1" { stop; }', "missing-require"),
        ('require "spamtest"; if spamtest :comparator "i;ascii-numeric" "1" { stop; }',
         "missing-require"),
    ):
        refused(bad, kind)


def test_parsers() -> None:
    assert parse_decimal("6.2") == pytest.approx(6.2, abs=1e-5)
    assert parse_decimal("-0,5") == pytest.approx(-0.5)
    assert parse_decimal("+") == 0.0  # Pigeonhole reads a lone sign as 0
    assert parse_decimal("") is None and parse_decimal("1e3") is None
    assert parse_decimal("123456") is None and parse_decimal("1.123456") is None
    name, pattern = parse_header_spec("X-Spam: s=(\\d+)")
    assert name == "X-Spam" and pattern is not None and pattern.pattern == "s=(\\d+)"
    assert parse_header_spec("X-Spam") == ("X-Spam", None)
    with pytest.raises(ValueError, match="regular expression"):
        parse_header_spec("X-Spam: (unclosed")
    with pytest.raises(ValueError):
        parse_header_spec(": x")
    assert parse_text_values("1=clean, 3=suspicious,5=infected") == (
        (1, "clean"), (3, "suspicious"), (5, "infected"))
    assert parse_text_values("") == ()
    for bad in ("clean", "6=x", "a=b"):
        with pytest.raises(ValueError, match="N=text"):
            parse_text_values(bad)


def test_settings_refuse_bad_configuration() -> None:
    Settings(spamtest_header="X-Spam-Score: score=([0-9]+)", virustest_text_values="1=ok")
    for bad in ({"spamtest_header": "X-Spam: ("}, {"virustest_text_values": "9=x"},
                {"spamtest_max": 0}):
        with pytest.raises(ValidationError):
            Settings(**bad)


def test_mda_sieve_test_takes_the_settings(mda, mda_env, tmp_path: Path) -> None:
    script = tmp_path / "s.sieve"
    script.write_text(REQ + 'if spamtest :matches "*" { fileinto "s${1}"; }\n'
                      'if virustest :matches "*" { fileinto "v${1}"; }\n')
    msg = tmp_path / "m.eml"
    msg.write_bytes(message("X-Spam-Score: 7", "X-Virus-Scan: suspicious"))
    args = ["sieve", "test", str(script), str(msg), "--json"]
    unconfigured = json.loads(mda(*args, check=True).stdout)
    assert sorted(a["mailbox"] for a in unconfigured["actions"]) == ["s0", "v0"]
    mda_env.update(MDA_SPAMTEST_HEADER="X-Spam-Score", MDA_SPAMTEST_MAX="7",
                   MDA_VIRUSTEST_HEADER="X-Virus-Scan",
                   MDA_VIRUSTEST_TEXT_VALUES="1=clean,3=suspicious,5=infected")
    configured = json.loads(mda(*args, check=True).stdout)
    assert sorted(a["mailbox"] for a in configured["actions"]) == ["s10", "v3"]
