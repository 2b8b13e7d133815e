"""`mda sieve check` and `mda sieve test` as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import assert_one_line_error
from tests.sieve.helpers import MESSAGE


def _files(tmp_path: Path, script: str, message: bytes = MESSAGE) -> tuple[str, str]:
    (tmp_path / "s.sieve").write_text(script, encoding="utf-8")
    (tmp_path / "m.eml").write_bytes(message)
    return str(tmp_path / "s.sieve"), str(tmp_path / "m.eml")


def test_check_ok(mda, tmp_path: Path) -> None:
    script, _ = _files(tmp_path, 'require "fileinto"; fileinto "Work";')
    proc = mda("sieve", "check", script, check=True)
    assert b"ok" in proc.stdout


def test_check_reports_line_and_column(mda, tmp_path: Path) -> None:
    script, _ = _files(tmp_path, 'require "fileinto"\nfileinto "Work";\n')
    proc = mda("sieve", "check", script)
    assert proc.returncode != 0
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mda: error: line 2, column 1: ")


def test_check_missing_file(mda, tmp_path: Path) -> None:
    proc = mda("sieve", "check", str(tmp_path / "nope.sieve"))
    assert proc.returncode != 0 and b"cannot read script" in proc.stderr


def test_json_output(mda, tmp_path: Path) -> None:
    script, message = _files(tmp_path, 'require ["fileinto", "imap4flags"];\n'
                             'if header :contains "subject" "report" {\n'
                             '  fileinto :flags ["\\\\Flagged", "$Work"] "Reports";\n'
                             '  redirect "Boss@Example.ORG";\n}\n')
    proc = mda("sieve", "test", script, message, "--json", check=True)
    assert json.loads(proc.stdout) == {"status": "ok", "errors": [], "actions": [
        {"action": "redirect", "address": "Boss@Example.ORG"},
        {"action": "store", "mailbox": "Reports", "flags": ["$work", "\\flagged"]},
    ]}


def test_json_compile_error(mda, tmp_path: Path) -> None:
    script, message = _files(tmp_path, "keep")
    proc = mda("sieve", "test", script, message, "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode != 0
    assert report["status"] == "compile_error" and report["actions"] == []
    assert report["errors"][0].startswith("line 1, column 5: ")


def test_null_sender_and_envelope_options(mda, tmp_path: Path) -> None:
    script, message = _files(tmp_path, 'require ["envelope", "fileinto"];\n'
                             'if envelope :is "from" "" { fileinto "Null"; }\n'
                             'if envelope :domain "to" "example.net" { fileinto "Net"; }')
    proc = mda("sieve", "test", script, message, "--envelope-from", "",
               "--envelope-to", "u@EXAMPLE.net", "--json", check=True)
    boxes = [a["mailbox"] for a in json.loads(proc.stdout)["actions"]]
    assert boxes == ["Net", "Null"]


def test_runtime_error_is_reported_with_implicit_keep(mda, tmp_path: Path) -> None:
    script, message = _files(tmp_path, 'require "reject"; keep; reject "no";')
    proc = mda("sieve", "test", script, message, check=True)
    out = proc.stdout.decode()
    assert "runtime error" in out and 'store into "INBOX"' in out


def test_readable_listing(mda, tmp_path: Path) -> None:
    script, message = _files(tmp_path, 'discard; redirect "a@example.net";')
    proc = mda("sieve", "test", script, message, check=True)
    assert proc.stdout.decode().splitlines() == ["discard", "redirect to <a@example.net>"]


def test_readable_listing_shows_flags_as_stored_and_warnings(mda, tmp_path: Path) -> None:
    script, message = _files(tmp_path, 'require ["imap4flags", "fileinto"];\n'
                             'setflag "\\\\seen MyKey";\n'
                             'addflag ["\\\\Recent", "mykey"];\n'
                             'fileinto :flags "\\\\flagged $Work" "Work";\nkeep;\n')
    readable = mda("sieve", "test", script, message, check=True).stdout.decode()
    assert 'store into "INBOX" flags \\Seen MyKey\n' in readable
    assert 'store into "Work" flags $Work \\Flagged\n' in readable
    assert 'warning: line 3: ignored invalid IMAP flag "\\Recent"' in readable
    report = json.loads(mda("sieve", "test", "--json", script, message, check=True).stdout)
    assert {"action": "store", "mailbox": "INBOX", "flags": ["\\seen", "mykey"]} \
        in report["actions"]


@pytest.mark.parametrize("option", ["--envelope-from", "--envelope-to"])
@pytest.mark.parametrize("value", ["not valid", "joe", "a@", "@example.org",
                                   "a@example .org", "Joe <joe@example.org>", "a@b@c"])
def test_invalid_envelope_address_is_one_line(mda, tmp_path: Path, option: str,
                                              value: str) -> None:
    script, message = _files(tmp_path, "keep;")
    assert_one_line_error(mda("sieve", "test", option, value, script, message),
                          option, "not an envelope address", repr(value))


def test_envelope_addresses_that_are_accepted(mda, tmp_path: Path) -> None:
    script, message = _files(tmp_path, 'require "envelope";\n'
                             'if envelope :is "from" "" { discard; }')
    assert_one_line_error(mda("sieve", "test", "--envelope-to", "", script, message),
                          "--envelope-to")
    for null in ("", "<>"):
        proc = mda("sieve", "test", "--envelope-from", null, script, message, check=True)
        assert proc.stdout == b"discard\n"
    for sender in ("<a@example.org>", '"x y"@example.org', "a@[192.0.2.1]"):
        proc = mda("sieve", "test", "--envelope-from", sender, "--envelope-to",
                   "<bob@example.com>", script, message, check=True)
        assert proc.stdout == b'store into "INBOX"\n', sender


def test_oversize_script_gives_size_and_limit_not_a_position(mda, mda_env, tmp_path: Path
                                                             ) -> None:
    script, message = _files(tmp_path, "keep;" + " " * 60)
    env = dict(mda_env, MDA_SIEVE_MAX_SCRIPT_SIZE="64")
    for argv in (("sieve", "check", script), ("sieve", "test", script, message),
                 ("sieve", "test", "--before", script, script, message)):
        err = assert_one_line_error(mda(*argv, env=env),
                                    "script is too large: 65 bytes; the limit is 64 bytes")
        assert "line 1" not in err and "column" not in err
    report = json.loads(mda("sieve", "test", "--json", script, message, env=env).stdout)
    assert report["errors"] == ["script is too large: 65 bytes; the limit is 64 bytes"]
