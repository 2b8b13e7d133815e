"""Script sequences (sieve_before / user / sieve_after) with Pigeonhole's rules.

Every row was run through Pigeonhole's `sieve-test -s before.sieve main.sieve`; the
expected stores are what its per-script listings add up to (see mda.sieve.multiscript),
except where noted.
"""

from __future__ import annotations

import json

import pytest

from mda.sieve import Envelope, compile_script, parse_message
from mda.sieve.dryrun import MailboxList, result_json
from mda.sieve.multiscript import evaluate_sequence
from tests.sieve.helpers import MESSAGE

FILE = 'require ["fileinto", "copy", "imap4flags", "ihave", "reject", "vacation"];\n'


def sequence(*sources: str):
    programs = [compile_script(FILE + s) for s in sources]
    result = evaluate_sequence(programs, parse_message(MESSAGE),
                               Envelope("alice@example.org", "bob@example.com"),
                               host=MailboxList(frozenset()))
    return result, result_json(result)["actions"]


def summary(actions: list[dict]) -> list[str]:
    out = []
    for a in actions:
        if a["action"] == "store":
            out.append(a["mailbox"] + "".join(f" {f}" for f in a["flags"]))
        else:
            out.append(a["action"])
    return sorted(out)


@pytest.mark.parametrize(("before", "main", "expected"), [
    # an explicit keep lets the next script run; both stores happen
    ("keep;", 'fileinto "A";', ["A", "INBOX"]),
    # the implicit keep of an earlier script is deferred: the later fileinto cancels it
    ("", 'fileinto "A";', ["A"]),
    # cancelling the keep ends the sequence
    ("discard;", 'fileinto "A";', ["discard"]),
    ('fileinto "B";', 'fileinto "A";', ["B"]),
    ('redirect "x@example.net";', 'fileinto "A";', ["redirect"]),
    ('fileinto "INBOX";', 'fileinto "A";', ["INBOX"]),
    # stop ends only the current script
    ('fileinto :copy "B"; stop;', 'fileinto "A";', ["A", "B"]),
    # discard in a later script cancels only that script's implicit keep
    ('fileinto "B"; keep;', "discard;", ["B", "INBOX", "discard"]),
    # committed actions never conflict with later ones
    ("keep;", 'reject "no";', ["INBOX", "reject"]),
    # one vacation per sequence
    ('vacation "x";', 'vacation "y";', ["INBOX", "vacation"]),
    # the internal flags variable carries over
    ('addflag "\\\\Seen";', 'addflag "\\\\Flagged";', ["INBOX \\flagged \\seen"]),
    ('addflag "\\\\Seen";', 'fileinto "A";', ["A \\seen"]),
    # the same mailbox twice is stored once (RFC 5228 §2.10.3)
    ("keep;", "keep;", ["INBOX"]),
    # RFC 3894 §3 over Pigeonhole: the plain fileinto cancels the implicit keep
    ('fileinto :copy "A";', 'fileinto "A";', ["A"]),
])
def test_two_scripts(before: str, main: str, expected: list[str]) -> None:
    result, actions = sequence(before, main)
    assert not result.errors
    assert summary(actions) == expected


def test_runtime_error_ends_the_sequence_and_keeps() -> None:
    result, actions = sequence('fileinto "B"; error "x";', 'fileinto "A";')
    assert result.errors and summary(actions) == ["INBOX"]
    result, actions = sequence('fileinto :copy "A";', 'fileinto "C"; error "boom";',
                               'fileinto "Never";')
    assert "boom" in result.errors[0] and summary(actions) == ["A", "INBOX"]


def test_after_scripts_run_while_the_keep_is_in_effect() -> None:
    _, actions = sequence("", "", 'fileinto "After";')
    assert summary(actions) == ["After"]
    _, actions = sequence("", 'fileinto "Mine";', 'fileinto "After";')
    assert summary(actions) == ["Mine"]


def test_variables_do_not_carry_over() -> None:
    programs = [compile_script('require "variables"; set "a" "1";'),
                compile_script('require ["variables", "fileinto"]; fileinto "v${a}";')]
    result = evaluate_sequence(programs, parse_message(MESSAGE),
                               Envelope("alice@example.org", "bob@example.com"))
    assert summary(result_json(result)["actions"]) == ["v"]


def test_cli_before_and_after(mda, tmp_path) -> None:
    files = {"b1.sieve": 'require "imap4flags"; addflag "\\\\Seen";',
             "main.sieve": "",
             "a1.sieve": 'require "fileinto"; fileinto "After";',
             "a2.sieve": 'require "fileinto"; fileinto "Never";'}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "m.eml").write_bytes(MESSAGE)
    proc = mda("sieve", "test", str(tmp_path / "main.sieve"), str(tmp_path / "m.eml"),
               "--before", str(tmp_path / "b1.sieve"), "--after", str(tmp_path / "a1.sieve"),
               "--after", str(tmp_path / "a2.sieve"), "--json", check=True)
    assert json.loads(proc.stdout)["actions"] == [
        {"action": "store", "mailbox": "After", "flags": ["\\seen"]}]


def test_cli_names_the_broken_before_script(mda, tmp_path) -> None:
    (tmp_path / "bad.sieve").write_text("fileinto \"x\";")
    (tmp_path / "main.sieve").write_text("keep;")
    (tmp_path / "m.eml").write_bytes(MESSAGE)
    proc = mda("sieve", "test", str(tmp_path / "main.sieve"), str(tmp_path / "m.eml"),
               "--before", str(tmp_path / "bad.sieve"), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["status"] == "compile_error"
    assert report["errors"][0].startswith(str(tmp_path / "bad.sieve") + ": line 1, column 1:")
