"""imap4flags (RFC 5232): the spelling of stored flags and warnings for invalid ones."""

from __future__ import annotations

import pytest

from mda.sieve import FileInto, Keep
from mda.sieve.dryrun import result_json
from tests.sieve.helpers import run

REQUIRE = 'require ["imap4flags", "fileinto", "variables"];\n'
SYSTEM = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"]


def _keep_flags(script: str) -> frozenset[str]:
    result = run(REQUIRE + script)
    assert not result.errors, result.errors
    (keep,) = [a for a in result.actions if isinstance(a, Keep)]
    return keep.flags


@pytest.mark.parametrize("canonical", SYSTEM)
@pytest.mark.parametrize("spell", [str.lower, str.upper, lambda f: f, str.swapcase])
def test_system_flags_are_stored_in_canonical_spelling(canonical: str, spell) -> None:
    written = spell(canonical).replace("\\", "\\\\")
    assert _keep_flags(f'setflag "{written}";') == {canonical}
    assert _keep_flags(f'keep :flags "{written}";') == {canonical}
    result = run(REQUIRE + f'fileinto :flags "{written}" "Work";')
    assert [a.flags for a in result.actions if isinstance(a, FileInto)] == [{canonical}]


def test_setflag_and_flags_tag_agree_on_spelling() -> None:
    """The reported bug: setflag "\\seen" was stored as \\seen, :flags "\\Seen" as \\Seen."""
    via_setflag = _keep_flags('setflag "\\\\seen";')
    via_tag = _keep_flags('keep :flags "\\\\Seen";')
    assert via_setflag == via_tag == {"\\Seen"}


def test_keywords_keep_the_case_first_seen() -> None:
    assert _keep_flags('setflag "MyKey"; addflag ["mykey", "$Label1"]; addflag "$LABEL1";') \
        == {"MyKey", "$Label1"}
    assert _keep_flags('setflag "x" "\\\\SEEN work"; keep :flags "${x}"; discard;') \
        == {"\\Seen", "work"}


def test_removeflag_and_hasflag_ignore_case() -> None:
    assert _keep_flags('setflag ["\\\\seen", "Work"]; removeflag ["\\\\SEEN", "WORK"];') \
        == frozenset()
    result = run(REQUIRE + 'setflag "\\\\seen";\n'
                 'if hasflag :is "\\\\SEEN" { fileinto "Work"; }')
    assert result_json(result)["actions"][0]["mailbox"] == "Work"


@pytest.mark.parametrize("flag", ["\\Recent", "\\Bogus", "(paren)", 'a"b'])
@pytest.mark.parametrize("command", ["setflag", "addflag", "removeflag", "keep :flags",
                                     "fileinto :flags"])
def test_invalid_flags_are_dropped_with_a_warning(flag: str, command: str) -> None:
    written = flag.replace("\\", "\\\\").replace('"', '\\"')
    target = ' "Work"' if command.startswith("fileinto") else ""
    result = run(REQUIRE + f'{command} ["{written}", "\\\\Flagged"]{target};\nkeep;')
    assert not result.errors
    assert [w for w in result.warnings if f'"{flag}"' in w and w.startswith("line 2: ")], \
        result.warnings
    stored = set().union(*(a.flags for a in result.actions
                           if isinstance(a, (Keep, FileInto))))
    assert flag not in stored and flag.lower() not in {f.lower() for f in stored}


def test_valid_flags_give_no_warning() -> None:
    result = run(REQUIRE + 'setflag ["\\\\seen", "$Junk"]; keep :flags "\\\\DRAFT";')
    assert result.warnings == ()


def test_dry_run_json_stays_lower_case() -> None:
    report = result_json(run(REQUIRE + 'keep :flags ["\\\\seen", "MyKey"];'))
    assert report["actions"] == [{"action": "store", "mailbox": "INBOX",
                                  "flags": ["\\seen", "mykey"]}]
