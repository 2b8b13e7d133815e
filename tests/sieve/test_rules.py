"""The action rules of RFC 5228 §2.10 and RFC 5429 §2 (mda.sieve.rules)."""

from __future__ import annotations

import pytest

from mda.sieve import Discard, FileInto, Keep, Redirect, Reject
from tests.sieve.helpers import run, stores

HEAD = 'require ["fileinto", "reject", "copy", "imap4flags"];\n'


def test_empty_script_is_implicit_keep() -> None:
    result = run("")
    assert result.actions == (Keep(implicit=True),) and result.implicit_keep


def test_fileinto_cancels_implicit_keep() -> None:
    assert run(HEAD + 'fileinto "Work";').actions == (FileInto("Work"),)


def test_copy_keeps_implicit_keep() -> None:
    result = run(HEAD + 'fileinto :copy "Work";')
    assert result.actions == (FileInto("Work", copy=True), Keep(implicit=True))


def test_same_mailbox_twice_files_once_and_inbox_is_case_insensitive() -> None:
    assert stores(HEAD + 'fileinto "Work"; fileinto "Work";') == ["Work"]
    assert stores(HEAD + 'keep; fileinto "inbox"; fileinto "INBOX";') == ["INBOX"]


def test_later_flags_win_for_the_same_mailbox() -> None:
    result = run(HEAD + 'fileinto :flags "$a" "Work"; fileinto :flags "$b" "Work";')
    assert result.actions == (FileInto("Work", flags=frozenset({"$b"})),)


def test_plain_fileinto_after_copy_to_same_box_cancels_implicit_keep() -> None:
    # RFC 5228 §4.1 with RFC 3894 (Pigeonhole keeps a copy in INBOX here)
    assert stores(HEAD + 'fileinto :copy "Archive"; fileinto "Archive";') == ["Archive"]


def test_discard_cancels_only_the_implicit_keep() -> None:
    assert run(HEAD + 'discard;').actions == (Discard(),)
    assert set(run(HEAD + 'discard; fileinto "Work";').actions) == {Discard(), FileInto("Work")}


@pytest.mark.parametrize("script", [
    'keep; reject "no";',
    'reject "no"; keep;',
    'fileinto "Work"; reject "no";',
    'redirect "a@example.net"; reject "no";',
    'reject "no"; reject "again";',
])
def test_reject_conflicts_are_runtime_errors(script: str) -> None:
    result = run(HEAD + script)
    assert result.actions == (Keep(implicit=True),)
    assert result.errors and "conflicts" in result.errors[0]


def test_reject_alone() -> None:
    assert run(HEAD + 'reject "go away";').actions == (Reject("go away"),)


def test_reject_with_discard_is_allowed() -> None:
    assert set(run(HEAD + 'discard; reject "x";').actions) == {Discard(), Reject("x")}


def test_redirect_duplicates_collapse_by_domain_case() -> None:
    result = run('redirect "a@Example.net"; redirect "a@example.NET";')
    assert result.actions == (Redirect("a@Example.net"),)


def test_runtime_error_drops_flags_too() -> None:
    result = run(HEAD + 'addflag "\\\\Seen"; keep; reject "x";')
    assert result.actions == (Keep(implicit=True),)


def test_implicit_keep_takes_the_internal_flags() -> None:
    result = run(HEAD + 'addflag ["\\\\Seen", "$Work"];')
    assert result.actions == (Keep(flags=frozenset({"\\Seen", "$Work"}), implicit=True),)


def test_stop_keeps_earlier_actions() -> None:
    assert stores(HEAD + 'fileinto "Work"; stop; fileinto "Archive";') == ["Work"]
