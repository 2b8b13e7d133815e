"""special-use (RFC 8579): specialuse_exists and fileinto :specialuse through a host that
knows the user's mailboxes and their special-use attributes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mda.sieve import FileInto, Keep
from mda.sieve.dryrun import result_json
from tests.sieve.helpers import refused, run

REQ = 'require ["special-use", "fileinto", "mailbox", "variables"];\n'


@dataclass(frozen=True)
class Mailboxes:
    """Mailbox name → its special-use attributes."""

    uses: dict[str, frozenset[str]]

    def mailbox_exists(self, name: str) -> bool:
        return name.upper() == "INBOX" or name in self.uses

    def special_use_exists(self, mailbox: str | None, attrs: tuple[str, ...]) -> bool:
        wanted = {a.lower() for a in attrs}
        if mailbox is not None:
            have = {a.lower() for a in self.uses.get(mailbox, frozenset())}
            return self.mailbox_exists(mailbox) and wanted <= have
        return all(any(w in {a.lower() for a in u} for u in self.uses.values())
                   for w in wanted)

    def special_use_mailbox(self, attr: str) -> str | None:
        return next((name for name, u in self.uses.items()
                     if attr.lower() in {a.lower() for a in u}), None)


HOST = Mailboxes({"Spam": frozenset({"\\Junk"}), "Archive": frozenset({"\\Archive"}),
                  "Old": frozenset({"\\Archive", "\\Flagged"}), "Plain": frozenset()})


def truth(test: str) -> bool:
    result = run(REQ + f'if {test} {{ fileinto "yes"; }}', host=HOST)
    assert result.errors == ()
    return any(isinstance(a, FileInto) and a.mailbox == "yes" for a in result.actions)


@pytest.mark.parametrize("test, expected", [
    ('specialuse_exists "\\\\Junk"', True),
    ('specialuse_exists "\\\\junk"', True),  # attributes compare case-insensitively
    ('specialuse_exists ["\\\\Junk", "\\\\Archive"]', True),  # in different mailboxes
    ('specialuse_exists ["\\\\Junk", "\\\\Sent"]', False),
    ('specialuse_exists "Spam" "\\\\Junk"', True),
    ('specialuse_exists "Old" ["\\\\Archive", "\\\\Flagged"]', True),
    ('specialuse_exists "Archive" ["\\\\Archive", "\\\\Flagged"]', False),
    ('specialuse_exists "Plain" "\\\\Junk"', False),
    ('specialuse_exists "Missing" "\\\\Junk"', False),
])
def test_specialuse_exists(test: str, expected: bool) -> None:
    assert truth(test) is expected


def test_invalid_mailbox_name_is_false_with_a_warning() -> None:
    result = run(REQ + 'set "m" ""; if specialuse_exists "${m}" "\\\\Junk" { fileinto "y"; }',
                 host=HOST)
    assert result.actions == (Keep(implicit=True),)
    assert any("specialuse_exists" in w for w in result.warnings)


def test_fileinto_uses_the_special_use_mailbox() -> None:
    result = run(REQ + 'fileinto :specialuse "\\\\Junk" "Junk";', host=HOST)
    assert result.actions == (FileInto("Spam", special_use="\\Junk"),)


def test_fileinto_falls_back_to_the_named_mailbox() -> None:
    result = run(REQ + 'fileinto :specialuse "\\\\Sent" :create "Sent";', host=HOST)
    assert result.actions == (FileInto("Sent", create=True, special_use="\\Sent"),)


def test_resolved_targets_merge_with_plain_fileinto() -> None:
    result = run(REQ + 'fileinto :specialuse "\\\\Junk" "Junk"; fileinto "Spam";', host=HOST)
    assert [a.mailbox for a in result.actions] == ["Spam"]


def test_dry_run_lists_the_named_mailbox_like_sieve_test() -> None:
    result = run(REQ + 'fileinto :specialuse "\\\\Junk" "Junk";')
    assert result_json(result)["actions"] == [
        {"action": "store", "mailbox": "Junk", "flags": []}]


def test_computed_invalid_attribute_is_a_runtime_error() -> None:
    for script in ('set "u" "Junk"; fileinto :specialuse "${u}" "Junk";',
                   'set "u" "\\\\Ju nk"; if specialuse_exists "${u}" { stop; }'):
        result = run(REQ + script, host=HOST)
        assert result.errors and result.actions == (Keep(implicit=True),)


@pytest.mark.parametrize("bad", [
    'fileinto :specialuse "Junk" "Junk";',
    'fileinto :specialuse "\\\\" "Junk";',
    'if specialuse_exists "Junk" { stop; }',  # one argument: the attribute list
    'if specialuse_exists "Spam" ["\\\\Junk", "x"] { stop; }',
    'if specialuse_exists ["Spam"] "\\\\Junk" { stop; }',
    'if specialuse_exists { stop; }',
])
def test_compile_errors(bad: str) -> None:
    refused(REQ + bad)


def test_needs_require() -> None:
    refused('require "fileinto"; fileinto :specialuse "\\\\Junk" "Junk";', "missing-require")
    refused('if specialuse_exists "\\\\Junk" { stop; }', "missing-require")
