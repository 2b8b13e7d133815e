"""ManageSieve against a real `mda serve`, in raw bytes (RFC 5804).

Every malformed variant of every command gets its exact reply, and the connection answers
the next command; then SASL forms, login throttling, isolation between users, quota codes,
UNAUTHENTICATE, Unicode names, STARTTLS with a certificate made for the test, implicit TLS,
limits, shutdown, a dead database, and the next delivery using the script just uploaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from mda.sieve import capabilities
from tests.conftest import MDA_BIN, database_away
from tests.e2e.conftest import ServerProcess, launch_server, stop_servers
from tests.lmtp import statuscodes as S
from tests.managesieve.conftest import (ALICE, ALICE_PASSWORD, BOB, BOB_PASSWORD, USERS,
                                        SieveWire, b64, literal, plain)
from tests.managesieve.tls import TestPKI, test_pki  # noqa: F401 (fixture)

OpenWire = Callable[..., Awaitable[SieveWire]]

SHARED_SCRIPT_LIMIT = 2000  # MDA_SIEVE_MAX_SCRIPT_SIZE of the shared server
PARSER_LIMIT = 64 * 1024  # literals up to this pass the parser when scripts are smaller


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory,
           module_database_url: str) -> Iterator[ServerProcess]:
    """One `mda serve` for the table-driven tests (each opens its own connection)."""
    root = tmp_path_factory.mktemp("shared")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDA_")}
    env.update(MDA_DATABASE_URL=module_database_url,
               MDA_SIEVE_SCRIPTS_DIR=str(root / "sieve_scripts"),
               MDA_SIEVE_MAX_SCRIPT_SIZE=str(SHARED_SCRIPT_LIMIT),
               MDA_MANAGESIEVE_AUTH_FAILURE_DELAY="0")
    subprocess.run([MDA_BIN, "db", "upgrade"], env=env, check=True, capture_output=True)
    for address, password in USERS.items():
        subprocess.run([MDA_BIN, "user", "add", address, "--password-stdin"], env=env,
                       input=password.encode() + b"\n", check=True, capture_output=True)
    server = launch_server(env, root)
    yield server
    stop_servers([server])


async def _session(server: ServerProcess, state: str) -> SieveWire:
    wire = await SieveWire.connect(server.managesieve_host, server.managesieve_port)
    assert (await wire.greeting()).status == "OK"
    if state == "auth":
        assert (await wire.login(BOB, BOB_PASSWORD)).status == "OK"
    return wire


def no(text: str, code: str | None = None) -> bytes:
    """The exact NO line for `text` (quoted; the tests' texts hold no CR/LF)."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return (f"NO ({code}) " if code else "NO ").encode() + f'"{quoted}"\r\n'.encode()


BIG = PARSER_LIMIT + 10
# (state, what the client sends, the exact reply)
MALFORMED = [
    # missing and extra arguments
    ("auth", b"PUTSCRIPT\r\n",
     no("PUTSCRIPT takes 2 arguments (script name, script); got 0")),
    ("auth", b'PUTSCRIPT "a"\r\n',
     no("PUTSCRIPT takes 2 arguments (script name, script); got 1")),
    ("auth", b'PUTSCRIPT "a" "keep;" "x"\r\n',
     no("PUTSCRIPT takes 2 arguments (script name, script); got 3")),
    ("auth", b"GETSCRIPT\r\n", no("GETSCRIPT takes 1 argument (script name); got 0")),
    ("auth", b'GETSCRIPT "a" "b"\r\n', no("GETSCRIPT takes 1 argument (script name); got 2")),
    ("auth", b"SETACTIVE\r\n", no("SETACTIVE takes 1 argument (script name); got 0")),
    ("auth", b"DELETESCRIPT\r\n", no("DELETESCRIPT takes 1 argument (script name); got 0")),
    ("auth", b'RENAMESCRIPT "a"\r\n',
     no("RENAMESCRIPT takes 2 arguments (old script name, new script name); got 1")),
    ("auth", b'HAVESPACE "a"\r\n',
     no("HAVESPACE takes 2 arguments (script name, size); got 1")),
    ("auth", b"CHECKSCRIPT\r\n", no("CHECKSCRIPT takes 1 argument (script); got 0")),
    ("auth", b'LISTSCRIPTS "x"\r\n', no("LISTSCRIPTS takes no arguments; got 1")),
    ("auth", b"LOGOUT now\r\n", no("LOGOUT takes no arguments; got 1")),
    ("nonauth", b"AUTHENTICATE\r\n",
     no("AUTHENTICATE takes 1 or 2 arguments (mechanism, initial response); got 0")),
    ("nonauth", b'NOOP "a" "b"\r\n', no("NOOP takes 0 or 1 argument (tag); got 2")),
    ("auth", b'HAVESPACE "a" "12"\r\n',
     no("HAVESPACE: size must be a number of octets, not '12'")),
    ("auth", b'HAVESPACE "a" -5\r\n', no("HAVESPACE: size must be a number of octets, not '-5'")),
    # bad literal sizes
    ("auth", b'PUTSCRIPT "a" {abc}\r\n',
     no("PUTSCRIPT: argument 2: literal size 'abc' is not a number")),
    ("auth", b'PUTSCRIPT "a" {-1}\r\n',
     no("PUTSCRIPT: argument 2: literal size '-1' is not a number")),
    ("auth", b'PUTSCRIPT "a" {99999999999}\r\n',
     no("PUTSCRIPT: argument 2: literal size 99999999999 is over 4294967295")),
    ("auth", b'PUTSCRIPT "a" {99999999999+}\r\n',
     no("PUTSCRIPT: argument 2: literal size 99999999999 is over 4294967295")),
    ("auth", b'PUTSCRIPT {1+} "a"\r\n',
     no("PUTSCRIPT: argument 1: a literal is {N+} or {N} at the end of the line")),
    # oversized literals: over the script limit, and over what the parser reads at all
    ("auth", b'PUTSCRIPT "a" ' + literal("#" * 2998 + "\r\n") + b"\r\n",
     no(f"script of 3000 octets is over the limit of {SHARED_SCRIPT_LIMIT} octets",
        "QUOTA/MAXSIZE")),
    ("auth", b'PUTSCRIPT "a" ' + literal(b"#" * BIG) + b"\r\n",
     no(f"script of {BIG} octets is over the limit of {SHARED_SCRIPT_LIMIT} octets",
        "QUOTA/MAXSIZE")),
    ("auth", b"CHECKSCRIPT " + literal(b"#" * BIG) + b"\r\n",
     no(f"CHECKSCRIPT: argument 1: literal of {BIG} octets is over the limit of "
        f"{PARSER_LIMIT}")),
    ("auth", b"CHECKSCRIPT " + literal("#" * 2998 + "\r\n") + b"\r\n",
     no(f"script is too large: 3000 bytes; the limit is {SHARED_SCRIPT_LIMIT} bytes")),
    # bad base64
    ("nonauth", b'AUTHENTICATE "PLAIN" "!!!!"\r\n',
     no("response is not valid base64 (Only base64 data is allowed)")),
    ("nonauth", b'AUTHENTICATE "LOGIN"\r\n"%%%"\r\n',
     b'"VXNlcm5hbWU6"\r\n'
     + no("authentication failed: response is not valid base64 (Only base64 data is "
          "allowed)")),
    # non-UTF-8 names and scripts
    ("auth", b"GETSCRIPT {2+}\r\n\xc3\x28\r\n",
     no("GETSCRIPT: argument 1: not UTF-8 at octet 0")),
    ("auth", b'DELETESCRIPT "ab\xff"\r\n', no("DELETESCRIPT: argument 1: not UTF-8 at octet 2")),
    ("auth", b'PUTSCRIPT "a" {6+}\r\nkeep;\xff\r\n',
     no("script is not UTF-8 at octet 5 (RFC 5228 §2.2)")),
    # control characters from the client are escaped in the text, never echoed raw
    ("auth", b"CHECKSCRIPT {6+}\r\nkeep;\0\r\n", no("line 1, column 6: unknown token \\x00")),
    ("auth", b"CHECKSCRIPT {9+}\r\nkeep;\x1b[2J\r\n",
     no("line 1, column 6: unknown token \\x1b[2J")),
    ("nonauth", b"NOOP {2+}\r\na\0\r\n", no("NOOP: the tag must not contain control characters")),
    ("auth", b"NOOP {3+}\r\na\r\n\r\n", no("NOOP: the tag must not contain control characters")),
    # names RFC 5804 §1.6 refuses
    ("auth", b'PUTSCRIPT {3+}\r\na\x01b "keep;"\r\n',
     no("invalid script name: script name 'a\\x01b' contains a control character")),
    ("auth", b'GETSCRIPT "a\xc2\x85b"\r\n',
     no("invalid script name: script name 'a\\x85b' contains a control character")),
    ("auth", b'GETSCRIPT "a\xe2\x80\xa8b"\r\n',
     no("invalid script name: script name 'a\\u2028b' contains a control character")),
    ("auth", b'RENAMESCRIPT "a" "' + b"n" * 513 + b'"\r\n',
     no("invalid script name: script name longer than 512 octets")),
    ("auth", b'GETSCRIPT ""\r\n', no("invalid script name: empty script name")),
    # unknown, misplaced and unparsable commands
    ("nonauth", b"FROB\r\n", no("unknown command 'FROB'")),
    ("nonauth", b'"NOOP"\r\n', no("expected a command name")),
    ("nonauth", b'NOOP "abc\r\n', no("NOOP: argument 1: quoted string has no closing '\"'")),
    ("nonauth", b'NOOP "a\\qb"\r\n',
     no("NOOP: argument 1: backslash may only escape '\"' or '\\\\' in a quoted string, "
        "not 'q'")),
    ("nonauth", b'NOOP "' + b"x" * 9000 + b'"\r\n',
     no("NOOP: command line longer than 8192 octets")),
    ("nonauth", b"LISTSCRIPTS\r\n", no("LISTSCRIPTS: authenticate first")),
    ("nonauth", b'PUTSCRIPT "a" "keep;"\r\n', no("PUTSCRIPT: authenticate first")),
    ("nonauth", b'GETSCRIPT "a"\r\n', no("GETSCRIPT: authenticate first")),
    ("nonauth", b'SETACTIVE "a"\r\n', no("SETACTIVE: authenticate first")),
    ("nonauth", b'DELETESCRIPT "a"\r\n', no("DELETESCRIPT: authenticate first")),
    ("nonauth", b'RENAMESCRIPT "a" "b"\r\n', no("RENAMESCRIPT: authenticate first")),
    ("nonauth", b'HAVESPACE "a" 1\r\n', no("HAVESPACE: authenticate first")),
    ("nonauth", b'CHECKSCRIPT "keep;"\r\n', no("CHECKSCRIPT: authenticate first")),
    ("nonauth", b"UNAUTHENTICATE\r\n", no("UNAUTHENTICATE: authenticate first")),
    ("auth", b'AUTHENTICATE "PLAIN" "' + plain(BOB, BOB_PASSWORD).encode() + b'"\r\n',
     no("AUTHENTICATE: already authenticated")),
    ("auth", b"STARTTLS\r\n", no("STARTTLS: already authenticated")),
    ("nonauth", b"STARTTLS\r\n", no("STARTTLS is not available: no certificate configured")),
    ("nonauth", b'AUTHENTICATE "CRAM-MD5"\r\n',
     no("unsupported SASL mechanism 'CRAM-MD5' (offered: PLAIN LOGIN)")),
    # commands on missing scripts
    ("auth", b'GETSCRIPT "missing"\r\n', no("no Sieve script 'missing'", "NONEXISTENT")),
    ("auth", b'SETACTIVE "missing"\r\n', no("no Sieve script 'missing'", "NONEXISTENT")),
    ("auth", b'DELETESCRIPT "missing"\r\n', no("no Sieve script 'missing'", "NONEXISTENT")),
    ("auth", b'RENAMESCRIPT "missing" "x"\r\n', no("no Sieve script 'missing'",
                                                   "NONEXISTENT")),
]


@pytest.mark.parametrize(("state", "request_", "reply"), MALFORMED,
                         ids=[f"{state}-{request[:40]!r}" for state, request, _ in MALFORMED])
async def test_malformed_command_gets_its_reply_and_the_connection_goes_on(
        shared: ServerProcess, state: str, request_: bytes, reply: bytes) -> None:
    wire = await _session(shared, state)
    try:
        response = await wire.command(request_)
        assert response.raw == reply
        assert (await wire.command(b'NOOP "still here"\r\n')).raw == \
            b'OK (TAG "still here") "Done"\r\n'
    finally:
        await wire.close()


async def test_greeting_capabilities(shared: ServerProcess) -> None:
    wire = await SieveWire.connect(shared.managesieve_host, shared.managesieve_port)
    try:
        greeting = await wire.greeting()
        assert greeting.lines == [
            b'"IMPLEMENTATION" "mda 0.1.0"',
            b'"SASL" "PLAIN LOGIN"',  # loopback peer: plain-text login is allowed
            b'"SIEVE" "' + " ".join(capabilities()).encode() + b'"',
            b'"NOTIFY" "mailto"',
            b'"MAXREDIRECTS" "4"',
            b'"UNAUTHENTICATE"',
            b'"VERSION" "1.0"',
        ]  # no STARTTLS without a certificate, no OWNER before login
        assert greeting.raw.endswith(b'\r\nOK "mda ManageSieve ready"\r\n')
        assert (await wire.login(ALICE, ALICE_PASSWORD)).raw == b'OK "Logged in"\r\n'
        capability = await wire.command(b"CAPABILITY\r\n")
        assert capability.lines == greeting.lines[:5] + [
            b'"OWNER" "alice@example.org"'] + greeting.lines[5:]
        assert capability.raw.endswith(b"\r\nOK\r\n")
        assert (await wire.command(b"NOOP\r\n")).raw == b'OK "Done"\r\n'
        assert (await wire.command(b"LOGOUT\r\n")).raw == b'OK "Logout completed"\r\n'
        assert await wire.eof()
    finally:
        await wire.close()


@pytest.mark.parametrize(("exchange", "server_lines"), [
    pytest.param([b'AUTHENTICATE "PLAIN" "%s"\r\n' % plain(ALICE, ALICE_PASSWORD).encode()],
                 [], id="plain-quoted"),
    pytest.param([b'AUTHENTICATE "PLAIN" ' + literal(plain(ALICE, ALICE_PASSWORD)) + b"\r\n"],
                 [], id="plain-literal-plus"),
    pytest.param([b'AUTHENTICATE "PLAIN" ' + literal(plain(ALICE, ALICE_PASSWORD), False)
                  + b"\r\n"], [], id="plain-literal-sync"),
    pytest.param([b"authenticate plain\r\n", b'"%s"\r\n' % plain(ALICE, ALICE_PASSWORD).encode()],
                 [b'""'], id="plain-continuation"),
    pytest.param([b'AUTHENTICATE "PLAIN"\r\n',
                  literal(plain(ALICE, ALICE_PASSWORD)) + b"\r\n"],
                 [b'""'], id="plain-continuation-literal"),
    pytest.param([b'AUTHENTICATE "PLAIN" "%s"\r\n'
                  % plain(ALICE, ALICE_PASSWORD, authzid=ALICE).encode()],
                 [], id="plain-authzid-same"),
    pytest.param([b'AUTHENTICATE "LOGIN"\r\n', b'"%s"\r\n' % b64(ALICE).encode(),
                  b'"%s"\r\n' % b64(ALICE_PASSWORD).encode()],
                 [b'"VXNlcm5hbWU6"', b'"UGFzc3dvcmQ6"'], id="login"),
    pytest.param([b'AUTHENTICATE "LOGIN" "%s"\r\n' % b64(ALICE).encode(),
                  literal(b64(ALICE_PASSWORD)) + b"\r\n"],
                 [b'"UGFzc3dvcmQ6"'], id="login-initial-response"),
    pytest.param([b'AUTHENTICATE "LOGIN"\r\n"%s"\r\n"%s"\r\n'
                  % (b64(ALICE).encode(), b64(ALICE_PASSWORD).encode())],
                 [b'"VXNlcm5hbWU6"', b'"UGFzc3dvcmQ6"'], id="login-pipelined"),
])
async def test_sasl_forms_log_in(shared: ServerProcess, exchange: list[bytes],
                                 server_lines: list[bytes]) -> None:
    wire = await _session(shared, "nonauth")
    try:
        for part in exchange:
            await wire.send(part)
        response = await wire.response()
        assert response.lines == server_lines
        assert response.raw.endswith(b'OK "Logged in"\r\n')
        assert (await wire.command(b"LISTSCRIPTS\r\n")).status == "OK"
    finally:
        await wire.close()


@pytest.mark.parametrize(("exchange", "reply"), [
    pytest.param([b'AUTHENTICATE "PLAIN"\r\n', b'"*"\r\n'],
                 b'""\r\n' + no("authentication cancelled by the client"), id="plain-abort"),
    pytest.param([b'AUTHENTICATE "LOGIN"\r\n', b'"%s"\r\n' % b64(ALICE).encode(), b'"*"\r\n'],
                 b'"VXNlcm5hbWU6"\r\n"UGFzc3dvcmQ6"\r\n'
                 + no("authentication cancelled by the client"), id="login-abort"),
    pytest.param([b'AUTHENTICATE "PLAIN" "%s"\r\n'
                  % plain(ALICE, ALICE_PASSWORD, authzid=BOB).encode()],
                 no("PLAIN: authorization identity must be empty or the same as the "
                    "authentication identity"), id="authzid-other-user"),
    pytest.param([b'AUTHENTICATE "PLAIN" "%s"\r\n' % plain(ALICE, BOB_PASSWORD).encode()],
                 no("authentication failed"), id="wrong-password"),
    pytest.param([b'AUTHENTICATE "PLAIN" "%s"\r\n'
                  % plain("nobody@example.org", "x").encode()],
                 no("authentication failed"), id="unknown-user"),
    pytest.param([b'AUTHENTICATE "PLAIN" "%s"\r\n' % plain("not an address", "x").encode()],
                 no("authentication failed"), id="malformed-user"),
    pytest.param([b'AUTHENTICATE "PLAIN"\r\n', b'"a" "b"\r\n'],
                 b'""\r\n' + no("authentication failed: expected one base64 string"),
                 id="two-strings"),
    pytest.param([b'AUTHENTICATE "PLAIN"\r\n', b'"abc\r\n'],
                 b'""\r\n' + no("authentication failed: argument 1: quoted string has no "
                                "closing '\"'"), id="unterminated"),
])
async def test_sasl_refusals(shared: ServerProcess, exchange: list[bytes],
                             reply: bytes) -> None:
    wire = await _session(shared, "nonauth")
    try:
        for part in exchange:
            await wire.send(part)
        assert (await wire.response()).raw == reply
        assert (await wire.command(b"LISTSCRIPTS\r\n")).raw == \
            no("LISTSCRIPTS: authenticate first")
        assert (await wire.login(ALICE, ALICE_PASSWORD)).status == "OK"
    finally:
        await wire.close()


# ---------------------------------------------------------------------- scripts


BROKEN = b'require "fileinto";\r\nif true {\r\n  fileinto "A"\r\n}\r\n'
WARNS = b'require "date";\r\nif date :zone "bogus" "date" "yearz" "2020" { keep; }\r\n'


async def test_script_commands(sieve_server, open_wire: OpenWire) -> None:
    server = sieve_server()
    wire = await open_wire(server, login=ALICE)
    source = b'require "fileinto";\r\nif header :is "x" "y" { fileinto "A"; }\r\n'
    assert (await wire.command(b'PUTSCRIPT "main" ' + literal(source) + b"\r\n")).raw \
        == b"OK\r\n"
    got = await wire.command(b'GETSCRIPT "main"\r\n')
    assert got.raw == b"{%d}\r\n" % len(source) + source + b"\r\nOK\r\n"
    broken = await wire.command(b'PUTSCRIPT "broken" ' + literal(BROKEN) + b"\r\n")
    assert broken.status == "NO" and broken.code is None
    assert broken.text.startswith("line 4, column 1: ")
    check = await wire.command(b"CHECKSCRIPT " + literal(BROKEN) + b"\r\n")
    assert check.raw == broken.raw
    warned = await wire.command(b"CHECKSCRIPT " + literal(WARNS) + b"\r\n")
    assert (warned.status, warned.code) == ("OK", "WARNINGS"), warned
    assert warned.text == (
        'line 2: :zone "bogus" is not a valid time zone [+hhmm or -hhmm]; the local time zone '
        'is used [RFC 5260 §4.1]; line 2: unknown date part "yearz"; the test is false '
        '[RFC 5260 §4.2]')  # brackets after a response code: see wire.encode_response
    stored = await wire.command(b'PUTSCRIPT "warns" ' + literal(WARNS) + b"\r\n")
    assert stored.raw == warned.raw
    assert (await wire.command(b'DELETESCRIPT "warns"\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b"CHECKSCRIPT " + literal(source) + b"\r\n")).raw == b"OK\r\n"
    assert (await wire.command(b'HAVESPACE "other" 100\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b'PUTSCRIPT "other" "keep;"\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b'SETACTIVE "main"\r\n')).raw == b"OK\r\n"
    listing = await wire.command(b"LISTSCRIPTS\r\n")
    assert listing.raw == b'"main" ACTIVE\r\n"other"\r\nOK\r\n'
    assert (await wire.command(b'DELETESCRIPT "main"\r\n')).raw == \
        no("Sieve script 'main' is active; deactivate it first", "ACTIVE")
    assert (await wire.command(b'RENAMESCRIPT "other" "main"\r\n')).raw == \
        no("Sieve script 'main' already exists", "ALREADYEXISTS")
    assert (await wire.command(b'RENAMESCRIPT "main" "renamed"\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b"LISTSCRIPTS\r\n")).lines == [b'"other"', b'"renamed" ACTIVE']
    assert (await wire.command(b'SETACTIVE ""\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b"LISTSCRIPTS\r\n")).lines == [b'"other"', b'"renamed"']
    assert (await wire.command(b'DELETESCRIPT "renamed"\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b"LISTSCRIPTS\r\n")).lines == [b'"other"']

SENDS_MAIL = (b'require ["vacation", "enotify"];\r\nredirect "carol@example.org";\r\n'
              b'vacation "away";\r\nnotify "mailto:dave@example.org";\r\n')


async def test_script_that_sends_mail_is_stored_with_a_warning_without_submission(
        sieve_server, open_wire: OpenWire) -> None:
    """Issue 5: without MDA_SUBMISSION_URL, redirect/vacation/notify cannot send; PUTSCRIPT
    and CHECKSCRIPT still accept the script but say so (RFC 5804 §1.3 WARNINGS)."""
    wire = await open_wire(sieve_server(), login=ALICE)
    stored = await wire.command(b'PUTSCRIPT "away" ' + literal(SENDS_MAIL) + b"\r\n")
    assert (stored.status, stored.code) == ("OK", "WARNINGS"), stored
    assert [part.split(":")[0] for part in stored.text.split("; ")] == \
        ["line 2", "line 3", "line 4"], stored.text
    assert "redirect cannot send mail" in stored.text
    assert "no outbound submission is configured" in stored.text
    assert (await wire.command(b"CHECKSCRIPT " + literal(SENDS_MAIL) + b"\r\n")).raw == \
        stored.raw


async def test_script_that_sends_mail_has_no_warning_with_submission(
        sieve_server, open_wire: OpenWire) -> None:
    wire = await open_wire(sieve_server(MDA_SUBMISSION_URL="smtp://127.0.0.1:1"), login=ALICE)
    assert (await wire.command(b'PUTSCRIPT "away" ' + literal(SENDS_MAIL) + b"\r\n")).raw \
        == b"OK\r\n"


async def test_quota_codes(sieve_server, open_wire: OpenWire) -> None:
    """RFC 5804 §1.3 QUOTA/MAXSCRIPTS, QUOTA/MAXSIZE, QUOTA/MAXSTORAGE; a replaced script
    counts once."""
    server = sieve_server(MDA_SIEVE_MAX_SCRIPTS="2", MDA_SIEVE_MAX_SCRIPT_SIZE="40",
                          MDA_SIEVE_MAX_STORAGE="50")
    wire = await open_wire(server, login=ALICE)

    def put(name: str, size: int) -> bytes:
        return b'PUTSCRIPT "%s" ' % name.encode() + literal("keep;" + " " * (size - 5)) \
            + b"\r\n"

    assert (await wire.command(put("a", 30))).raw == b"OK\r\n"
    assert (await wire.command(put("b", 15))).raw == b"OK\r\n"
    assert (await wire.command(put("c", 5))).raw == no(
        "Sieve script quota: this would make 3 scripts; at most 2 are allowed",
        "QUOTA/MAXSCRIPTS")
    assert (await wire.command(put("a", 35))).raw == b"OK\r\n"  # 35 + 15 = 50
    assert (await wire.command(put("a", 36))).raw == no(
        "Sieve script quota: all scripts together would take 51 octets; at most 50 are "
        "allowed", "QUOTA/MAXSTORAGE")
    assert (await wire.command(put("a", 41))).raw == no(
        "script of 41 octets is over the limit of 40 octets", "QUOTA/MAXSIZE")
    assert (await wire.command(b'HAVESPACE "c" 1\r\n')).code == "QUOTA/MAXSCRIPTS"
    assert (await wire.command(b'HAVESPACE "a" 36\r\n')).code == "QUOTA/MAXSTORAGE"
    assert (await wire.command(b'HAVESPACE "a" 41\r\n')).code == "QUOTA/MAXSIZE"
    assert (await wire.command(b'HAVESPACE "a" 99999999999\r\n')).code == "QUOTA/MAXSIZE"
    assert (await wire.command(b'HAVESPACE "a" 35\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b'DELETESCRIPT "b"\r\n')).raw == b"OK\r\n"
    assert (await wire.command(put("c", 15))).raw == b"OK\r\n"
    # The other user's quota is their own.
    other = await open_wire(server, login=BOB)
    assert (await other.command(put("a", 40))).raw == b"OK\r\n"


async def test_users_cannot_reach_each_others_scripts(sieve_server, open_wire: OpenWire,
                                                      mda) -> None:
    server = sieve_server()
    alice = await open_wire(server, login=ALICE)
    assert (await alice.command(b'PUTSCRIPT "secret" "keep;"\r\n')).raw == b"OK\r\n"
    assert (await alice.command(b'SETACTIVE "secret"\r\n')).raw == b"OK\r\n"
    bob = await open_wire(server, login=BOB)
    assert (await bob.command(b"LISTSCRIPTS\r\n")).raw == b"OK\r\n"
    missing = no("no Sieve script 'secret'", "NONEXISTENT")
    for request in (b'GETSCRIPT "secret"\r\n', b'SETACTIVE "secret"\r\n',
                    b'DELETESCRIPT "secret"\r\n', b'RENAMESCRIPT "secret" "mine"\r\n'):
        assert (await bob.command(request)).raw == missing, request
    # The same name is Bob's own script, which leaves Alice's alone.
    assert (await bob.command(b'PUTSCRIPT "secret" "discard;"\r\n')).raw == b"OK\r\n"
    assert (await bob.command(b'HAVESPACE "secret" 10\r\n')).raw == b"OK\r\n"
    assert (await bob.command(b'DELETESCRIPT "secret"\r\n')).raw == b"OK\r\n"
    assert (await alice.command(b'GETSCRIPT "secret"\r\n')).lines == [b"{5}\r\nkeep;"]
    assert (await alice.command(b"LISTSCRIPTS\r\n")).lines == [b'"secret" ACTIVE']
    listed = mda("sieve", "list", ALICE, "--json", check=True)
    assert b'"active": true' in listed.stdout


async def test_literal_behind_an_overlong_line_is_not_run(sieve_server,
                                                          open_wire: OpenWire) -> None:
    """A line over 8192 octets ending in a literal header: the literal is the line's data,
    skipped with it, never run as a command; the next real command works."""
    server = sieve_server()
    wire = await open_wire(server, login=ALICE)
    injected = b'PUTSCRIPT "injected" "keep;"\r\n'
    await wire.send(b'PUTSCRIPT "' + b"n" * 9000 + b'" ' + literal(injected) + b"\r\n")
    assert (await wire.response()).raw == no("PUTSCRIPT: command line longer than 8192 "
                                             "octets")
    # Had the literal run, its OK would come before NOOP's answer.
    assert (await wire.command(b'NOOP "next"\r\n')).raw == b'OK (TAG "next") "Done"\r\n'
    assert (await wire.command(b"LISTSCRIPTS\r\n")).raw == b"OK\r\n"
    assert (await wire.command(b'PUTSCRIPT "real" "keep;"\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b"LISTSCRIPTS\r\n")).raw == b'"real"\r\nOK\r\n'


async def test_unauthenticate_then_log_in_as_someone_else(sieve_server,
                                                          open_wire: OpenWire) -> None:
    server = sieve_server()
    wire = await open_wire(server, login=ALICE)
    assert (await wire.command(b'PUTSCRIPT "alices" "keep;"\r\n')).raw == b"OK\r\n"
    assert b'"OWNER" "alice@example.org"' in (await wire.command(b"CAPABILITY\r\n")).lines
    assert (await wire.command(b"UNAUTHENTICATE\r\n")).raw == b"OK\r\n"
    assert (await wire.command(b"LISTSCRIPTS\r\n")).raw == no("LISTSCRIPTS: authenticate first")
    assert not any(line.startswith(b'"OWNER"')
                   for line in (await wire.command(b"CAPABILITY\r\n")).lines)
    assert (await wire.login(BOB, BOB_PASSWORD)).status == "OK"
    assert b'"OWNER" "bob@example.org"' in (await wire.command(b"CAPABILITY\r\n")).lines
    assert (await wire.command(b"LISTSCRIPTS\r\n")).raw == b"OK\r\n"
    assert (await wire.command(b'GETSCRIPT "alices"\r\n')).code == "NONEXISTENT"


NAMES = ["Jörg’s 規則 😀", 'quote " and \\ backslash', "tab-free spaces  ok", "n" * 512,
         "ünïcödé/with/slashes"]


async def test_unicode_names_round_trip_exactly(sieve_server, open_wire: OpenWire,
                                                mda) -> None:
    server = sieve_server()
    wire = await open_wire(server, login=ALICE)
    for name in NAMES:
        assert (await wire.command(b"PUTSCRIPT " + literal(name) + b' "keep;"\r\n')).raw \
            == b"OK\r\n", name
    listing = await wire.command(b"LISTSCRIPTS\r\n")
    expected = sorted(NAMES)
    quoted = [b'"' + n.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
              for n in expected]
    assert listing.lines == quoted
    for name in NAMES:
        got = await wire.command(b"GETSCRIPT " + literal(name) + b"\r\n")
        assert got.lines == [b"{5}\r\nkeep;"], name
    assert (await wire.command(b"RENAMESCRIPT " + literal(NAMES[0]) + b" "
                               + literal("名前 2") + b"\r\n")).raw == b"OK\r\n"
    assert (await wire.command('GETSCRIPT "名前 2"\r\n'.encode())).status == "OK"
    # An NFD name is stored in NFC (RFC 5804 §1.6 net-unicode, RFC 5198): both spellings
    # name the same script.
    assert (await wire.command(b'PUTSCRIPT "cafe\xcc\x81" "keep;"\r\n')).raw == b"OK\r\n"
    assert (await wire.command(b'GETSCRIPT "caf\xc3\xa9"\r\n')).status == "OK"
    assert b'"caf\xc3\xa9"' in (await wire.command(b"LISTSCRIPTS\r\n")).lines
    listed = mda("sieve", "list", ALICE, check=True).stdout.decode().splitlines()
    assert sorted(listed) == sorted([*NAMES[1:], "名前 2", "café"])


# ---------------------------------------------------------------------- delivery


def _message(subject: str) -> bytes:
    return (f"From: a@example.net\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\nbody\r\n").encode()


async def _deliver_and_find(server: ServerProcess, mda, subject: str) -> str:
    client = await server.client()
    try:
        result = await client.transaction("a@example.net", [ALICE], _message(subject))
    finally:
        await client.quit()
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    listed = json.loads(mda("message", "list", ALICE, "--json", check=True).stdout)
    (mailbox,) = [m["mailbox"] for m in listed if m["subject"] == subject]
    return mailbox


def _filing(mailbox: str) -> bytes:
    return literal(f'require ["fileinto", "mailbox"];\r\nfileinto :create "{mailbox}";\r\n')


async def test_next_delivery_uses_the_script_just_uploaded(sieve_server, open_wire: OpenWire,
                                                           mda) -> None:
    """Compiled programs are cached by content hash: a replaced or newly activated script
    applies to the very next message."""
    server = sieve_server()
    wire = await open_wire(server, login=ALICE)
    assert (await wire.command(b'PUTSCRIPT "s" ' + _filing("One") + b"\r\n")).raw == b"OK\r\n"
    assert await _deliver_and_find(server, mda, "before activation") == "INBOX"
    assert (await wire.command(b'SETACTIVE "s"\r\n')).raw == b"OK\r\n"
    assert await _deliver_and_find(server, mda, "first") == "One"
    assert (await wire.command(b'PUTSCRIPT "s" ' + _filing("Two") + b"\r\n")).raw == b"OK\r\n"
    assert await _deliver_and_find(server, mda, "second") == "Two"
    assert (await wire.command(b'PUTSCRIPT "t" ' + _filing("Three") + b"\r\n")).raw \
        == b"OK\r\n"
    assert (await wire.command(b'SETACTIVE "t"\r\n')).raw == b"OK\r\n"
    assert await _deliver_and_find(server, mda, "third") == "Three"
    assert (await wire.command(b'PUTSCRIPT "s" ' + _filing("One") + b"\r\n")).raw == b"OK\r\n"
    assert (await wire.command(b'SETACTIVE "s"\r\n')).raw == b"OK\r\n"
    assert await _deliver_and_find(server, mda, "fourth") == "One"
    assert (await wire.command(b'SETACTIVE ""\r\n')).raw == b"OK\r\n"
    assert await _deliver_and_find(server, mda, "fifth") == "INBOX"


# ---------------------------------------------------------------------- logins


async def test_failed_logins_are_delayed_then_throttled(sieve_server,
                                                        open_wire: OpenWire) -> None:
    server = sieve_server(MDA_MANAGESIEVE_AUTH_FAILURE_DELAY="0.4",
                          MDA_MANAGESIEVE_AUTH_MAX_FAILURES="2",
                          MDA_MANAGESIEVE_AUTH_FAILURE_WINDOW="60")
    wire = await open_wire(server)
    for _ in range(2):
        started = time.monotonic()
        assert (await wire.login(ALICE, "wrong password")).raw == no("authentication failed")
        assert time.monotonic() - started >= 0.4
    # The right password no longer helps: it is not even checked.
    started = time.monotonic()
    assert (await wire.login(ALICE, ALICE_PASSWORD)).raw == no(
        "too many failed logins; try again later", "TRYLATER")
    assert time.monotonic() - started >= 0.4
    # From loopback (a webmail on this machine) the count is per login name: Alice is
    # blocked under any spelling of her domain, Bob is not.
    again = await open_wire(server)
    assert (await again.login("alice@EXAMPLE.org", ALICE_PASSWORD)).code == "TRYLATER"
    assert (await again.login(BOB, BOB_PASSWORD)).raw == b'OK "Logged in"\r\n'
    server.wait_for_log(r"failed login for 'alice@example\.org'")
    server.wait_for_log(r"login for 'alice@EXAMPLE\.org' refused: too many failed logins")
    assert "wrong password" not in server.log_text()
    assert ALICE_PASSWORD not in server.log_text()


async def test_parallel_wrong_passwords_check_at_most_max_failures(
        sieve_server, open_wire: OpenWire) -> None:
    """50 connections from one address try at once: in-flight attempts count against the
    limit, so 10 passwords are checked and the other 40 get TRYLATER without a check."""
    server = sieve_server(MDA_MANAGESIEVE_AUTH_FAILURE_DELAY="0.5",
                          MDA_MANAGESIEVE_AUTH_MAX_FAILURES="10",
                          MDA_MANAGESIEVE_AUTH_FAILURE_WINDOW="300")
    wires = [await open_wire(server) for _ in range(50)]
    replies = await asyncio.gather(*(wire.login(ALICE, f"wrong {n}")
                                     for n, wire in enumerate(wires)))
    texts = sorted(reply.raw for reply in replies)
    assert texts.count(no("authentication failed")) == 10, texts
    assert texts.count(no("too many failed logins; try again later", "TRYLATER")) == 40
    deadline = time.monotonic() + 10  # the log is read by a thread: let it catch up
    while server.log_text().count("failed login for") < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert server.log_text().count("failed login for") == 10
    assert server.log_text().count("refused: too many failed logins") == 40


_GREETING_AS_NOBODY = """
import socket, sys
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect(sys.argv[1])
    sock.settimeout(10)
    data = b""
    while b"OK " not in data:
        data += sock.recv(4096)
print(data.decode().splitlines()[-1])
"""


async def test_unix_socket_is_open_to_other_users(sieve_server) -> None:
    """MDA_MANAGESIEVE_LISTEN=unix:PATH is created 0666, like the LMTP socket: a webmail
    running as another user can connect (the directory decides who reaches it)."""
    directory = Path(tempfile.mkdtemp(prefix="mda-sieve-"))
    try:
        directory.chmod(0o755)
        path = directory / "sieve.sock"
        server = sieve_server(MDA_MANAGESIEVE_LISTEN=f"unix:{path}")
        assert server.managesieve_where == f"unix:{path}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        if os.geteuid() == 0:  # only root can run the client as another user
            seen = subprocess.run(["python3", "-c", _GREETING_AS_NOBODY, str(path)],
                                  user="nobody", group="nogroup", capture_output=True,
                                  timeout=30)
            assert seen.stdout.decode().strip() == 'OK "mda ManageSieve ready"', seen
        reader, writer = await asyncio.open_unix_connection(str(path))
        wire = SieveWire(reader, writer)
        try:
            assert (await wire.greeting()).status == "OK"
            assert (await wire.login(ALICE, ALICE_PASSWORD)).raw == b'OK "Logged in"\r\n'
        finally:
            await wire.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_login_is_logged(sieve_server, open_wire: OpenWire) -> None:
    server = sieve_server()
    await open_wire(server, login=BOB)
    server.wait_for_log(r"mda\.managesieve: ManageSieve 127\.0\.0\.1:\d+: login "
                        r"bob@example\.org$")
    assert BOB_PASSWORD not in server.log_text()


# ---------------------------------------------------------------------- TLS


def _client_context(pki: TestPKI) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    return context


async def test_starttls(sieve_server, test_pki: TestPKI) -> None:  # noqa: F811
    server = sieve_server(**test_pki.server_settings())
    wire = await SieveWire.connect(server.managesieve_host, server.managesieve_port)
    try:
        greeting = await wire.greeting()
        assert b'"STARTTLS"' in greeting.lines
        # A command pipelined behind STARTTLS came in plaintext: it must be dropped.
        await wire.send(b'STARTTLS\r\nNOOP "injected"\r\n')
        assert (await wire.response()).raw == b'OK "Begin TLS negotiation now"\r\n'
        await wire.writer.start_tls(_client_context(test_pki), server_hostname="localhost")
        after = await wire.response()
        assert after.raw.endswith(b'OK "TLS negotiation successful"\r\n')
        assert after.lines == [line for line in greeting.lines if line != b'"STARTTLS"']
        assert (await wire.command(b'NOOP "over tls"\r\n')).raw == \
            b'OK (TAG "over tls") "Done"\r\n'
        assert (await wire.command(b"STARTTLS\r\n")).raw == no("TLS is already active")
        assert (await wire.login(ALICE, ALICE_PASSWORD)).status == "OK"
        # RFC 5804 §2.1: no capabilities after AUTHENTICATE without a security layer.
        assert (await wire.command(b'PUTSCRIPT "t" "keep;"\r\n')).raw == b"OK\r\n"
    finally:
        await wire.close()
    server.wait_for_log(r"discarded 17 octets sent after STARTTLS")
    server.wait_for_log(r"login alice@example\.org \(TLS\)")


async def test_starttls_with_an_untrusted_certificate_fails_cleanly(
        sieve_server, test_pki: TestPKI, open_wire: OpenWire) -> None:  # noqa: F811
    server = sieve_server(**test_pki.server_settings())
    wire = await SieveWire.connect(server.managesieve_host, server.managesieve_port)
    try:
        await wire.greeting()
        assert (await wire.command(b"STARTTLS\r\n")).status == "OK"
        with pytest.raises(ssl.SSLCertVerificationError):
            await wire.writer.start_tls(ssl.create_default_context(),
                                        server_hostname="localhost")
    finally:
        wire.writer.transport.abort()
    server.wait_for_log(r"TLS handshake failed")
    assert (await (await open_wire(server)).login(BOB, BOB_PASSWORD)).status == "OK"


async def test_implicit_tls(sieve_server, test_pki: TestPKI) -> None:  # noqa: F811
    server = sieve_server(**test_pki.server_settings(),
                          MDA_MANAGESIEVE_TLS_LISTEN="127.0.0.1:0")
    assert server.managesieve_tls_where
    wire = await SieveWire.connect("127.0.0.1", server.managesieve_tls_port,
                                   tls=_client_context(test_pki))
    try:
        greeting = await wire.greeting()
        assert b'"STARTTLS"' not in greeting.lines
        assert b'"SASL" "PLAIN LOGIN"' in greeting.lines
        assert (await wire.login(BOB, BOB_PASSWORD)).status == "OK"
    finally:
        await wire.close()


def test_unreadable_certificate_stops_the_start(mda, tmp_path: Path, mda_env) -> None:
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("this is not PEM\n")
    mda("db", "upgrade", check=True)
    env = {**mda_env, "MDA_TLS_CERT": str(bad), "MDA_TLS_KEY": str(bad),
           "MDA_LMTP_LISTEN": "127.0.0.1:0", "MDA_MANAGESIEVE_LISTEN": "127.0.0.1:0"}
    proc = subprocess.run([MDA_BIN, "serve"], env=env, capture_output=True, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("mda: error: ") and str(bad) in last, proc.stderr
    assert "Traceback" not in proc.stderr.decode()


@pytest.mark.parametrize(("setting", "value", "error"), [
    ("MDA_MANAGESIEVE_LISTEN", "nonsense",
     "mda: error: MDA_MANAGESIEVE_LISTEN: listen address 'nonsense': use host:port, "
     "[v6address]:port or unix:/path"),
    ("MDA_MANAGESIEVE_LISTEN", "127.0.0.1:70000",
     "mda: error: MDA_MANAGESIEVE_LISTEN: listen address '127.0.0.1:70000': port must be a "
     "number 0..65535"),
])
def test_bad_listen_address_stops_the_start(mda, mda_env, setting: str, value: str,
                                            error: str) -> None:
    mda("db", "upgrade", check=True)
    env = {**mda_env, "MDA_LMTP_LISTEN": "127.0.0.1:0", setting: value}
    proc = subprocess.run([MDA_BIN, "serve"], env=env, capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.decode().strip().splitlines()[-1] == error


def test_port_in_use_stops_the_start(mda, mda_env) -> None:
    mda("db", "upgrade", check=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**mda_env, "MDA_LMTP_LISTEN": "127.0.0.1:0",
               "MDA_MANAGESIEVE_LISTEN": f"127.0.0.1:{port}"}
        proc = subprocess.run([MDA_BIN, "serve"], env=env, capture_output=True, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert last.startswith(f"mda: error: cannot listen for ManageSieve on 127.0.0.1:{port}: ")
    assert "address already in use" in last.lower()


# ---------------------------------------------------------------------- limits, shutdown


async def test_idle_connection_gets_bye(sieve_server, open_wire: OpenWire) -> None:
    server = sieve_server(MDA_MANAGESIEVE_IDLE_TIMEOUT="0.5")
    wire = await open_wire(server)
    assert (await wire.response(timeout=5)).raw == b'BYE "idle timeout"\r\n'
    assert await wire.eof()


async def test_connection_limit(sieve_server, open_wire: OpenWire) -> None:
    server = sieve_server(MDA_MANAGESIEVE_MAX_CONNECTIONS="1")
    first = await open_wire(server)
    extra = await SieveWire.connect(server.managesieve_host, server.managesieve_port)
    try:
        assert (await extra.response()).raw == b'BYE "too many connections"\r\n'
        assert await extra.eof()
    finally:
        await extra.close()
    assert (await first.command(b"NOOP\r\n")).raw == b'OK "Done"\r\n'


async def test_shutdown_says_bye_and_exits_cleanly(sieve_server,
                                                   open_wire: OpenWire) -> None:
    """Idle sessions get BYE at once; one in the middle of a command gets it when the
    shutdown timeout runs out."""
    server = sieve_server(MDA_SHUTDOWN_TIMEOUT="1")
    idle = await open_wire(server, login=ALICE)
    mid_command = await open_wire(server)
    await mid_command.send(b'PUTSCRIPT "x" {100+}\r\nkeep;')  # not finished
    await asyncio.sleep(0.2)
    server.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert (await idle.response()).raw == b'BYE "server shutting down"\r\n'
    assert await idle.eof()
    assert time.monotonic() - started < 1
    assert (await mid_command.response()).raw == b'BYE "server shutting down"\r\n'
    assert await mid_command.eof()
    assert await asyncio.to_thread(server.proc.wait, 60) == 0


async def test_dead_database_answers_trylater(sieve_server, open_wire: OpenWire,
                                              database_url: str) -> None:
    server = sieve_server()
    wire = await open_wire(server, login=ALICE)
    with database_away(database_url):
        for request in (b"LISTSCRIPTS\r\n", b'PUTSCRIPT "a" "keep;"\r\n'):
            response = await wire.command(request)
            assert (response.status, response.code) == ("NO", "TRYLATER"), response
            assert response.text == "database unavailable, try again later"
        other = await open_wire(server)
        assert (await other.login(BOB, BOB_PASSWORD)).code == "TRYLATER"
        assert (await wire.command(b"NOOP\r\n")).raw == b'OK "Done"\r\n'
    assert (await wire.command(b"LISTSCRIPTS\r\n")).status == "OK"  # back without a restart
