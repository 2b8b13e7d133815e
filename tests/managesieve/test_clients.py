"""Issue 4's acceptance: three real ManageSieve clients against a real `mda serve`.

The clients are sievelib's `Client`, the PyPI `managesieve` package and Debian's
`sieve-connect` (see `tests/managesieve/clients.py` for how each one talks). Each logs in
with a password set through `mda user add --password-stdin`, over plain loopback and over
STARTTLS with a certificate made for the test, then uploads, checks a broken script (the
error and its line number reach the client), activates, lists, renames where the client can,
and deletes. Then a message over LMTP is filed by the script the client uploaded, read back
with `mda message list`. Further tests: the script just activated (or re-uploaded) applies
to the very next delivery, each client's SASL wire form (shown by a recording relay or by
sieve-connect's own trace) is accepted, refusals (quota, active script, wrong password)
reach each client with their response code, and a name one client stores reads back the
same in the others.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sievelib.managesieve import Client
from sievelib.managesieve import Error as SievelibError

from tests.e2e.conftest import ServerProcess, start_server  # noqa: F401 (fixture)
from tests.lmtp import statuscodes as S
from tests.managesieve.clients import (
    CLIENTS,
    Account,
    ClientSession,
    LoginFailed,
    PyManageSieveSession,
    RecordingProxy,
    SieveConnectSession,
    SievelibSession,
    open_session,
    trusting,
)
from tests.managesieve.tls import TestPKI, test_pki  # noqa: F401 (fixture)

Run = Callable[..., subprocess.CompletedProcess[bytes]]

USER = "alice@example.org"
PASSWORD = "s3cret passw0rd ünïcode"

FILE_REPORTS = """require ["fileinto", "mailbox"];
if header :contains "subject" "report" {
    fileinto :create "Work";
}
"""
SPARE = """require "fileinto";
if header :contains "subject" "lunch" {
    fileinto "Archive";
}
"""
# Line 4, column 5 holds a command that does not exist.
BROKEN = """require "fileinto";
# a comment line
if header :contains "subject" "x" {
    frobnicate "Work";
}
"""
BROKEN_WHERE = re.compile(r"line 4, column 5\b.*frobnicate")


def message(subject: str) -> bytes:
    return (f"From: Boss <boss@example.net>\r\nTo: {USER}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@example.net>\r\n\r\nBody text.\r\n").encode()


async def deliver(server: ServerProcess, subject: str) -> None:
    """One message to USER over LMTP; asserts it was delivered."""
    client = await server.client()
    try:
        result = await client.transaction("boss@example.net", [USER], message(subject))
    finally:
        await client.quit()
    assert [r.status for r in result.after_data] == [S.DELIVERED], result


def mailbox_of(mda: Run, subject: str) -> str:
    """The mailbox holding USER's message with `subject` (exactly one must exist)."""
    listing = json.loads(mda("message", "list", USER, "--json", check=True).stdout)
    found = [m["mailbox"] for m in listing if m["subject"] == subject]
    assert len(found) == 1, listing
    return found[0]


def add_user(mda: Run, address: str = USER, password: str = PASSWORD) -> None:
    mda("user", "add", address, "--password-stdin", input=f"{password}\n".encode(), check=True)


@pytest.fixture
def connect(tmp_path: Path, require_tool: Callable[[str], str]
            ) -> Iterator[Callable[..., ClientSession]]:
    """`connect(kind, server, pki=None, user=USER, password=PASSWORD, mechanism=None)`:
    a logged-in session of that client (logged out at teardown)."""
    sessions: list[ClientSession] = []

    def open_(kind: str, server: ServerProcess, pki: TestPKI | None = None, *,
              user: str = USER, password: str = PASSWORD, mechanism: str | None = None,
              port: int | None = None) -> ClientSession:
        program = require_tool("sieve-connect") if kind == "sieve-connect" else None
        account = Account(server.managesieve_host, port or server.managesieve_port, user,
                          password, pki, mechanism)
        session = open_session(kind, account, tmp_path / f"{kind}-{len(sessions)}", program)
        sessions.append(session)
        return session

    yield open_
    for session in sessions:
        session.logout()


@pytest.fixture
def serve(start_server, mda: Run) -> Callable[..., ServerProcess]:  # noqa: F811
    """`serve(pki=None, **settings)`: `mda serve` (with the certificate when `pki` is given)
    and USER added with PASSWORD."""

    def start(pki: TestPKI | None = None, **settings: str) -> ServerProcess:
        server = start_server(**(pki.server_settings() if pki else {}), **settings)
        assert server.managesieve_where, server.log_text()
        add_user(mda)
        return server

    return start


@pytest.mark.parametrize("transport", ["plain", "starttls"])
@pytest.mark.parametrize("kind", CLIENTS)
async def test_manage_scripts_then_delivery_is_filtered(
        kind: str, transport: str, serve, connect, test_pki: TestPKI, mda: Run) -> None:  # noqa: F811
    pki = test_pki if transport == "starttls" else None
    server = serve(pki)
    session = connect(kind, server, pki)

    if session.can_check:
        refused = session.check(BROKEN)
        assert not refused.ok and BROKEN_WHERE.search(refused.text), refused
        assert session.check(FILE_REPORTS).ok
    refused = session.put("broken", BROKEN)
    assert not refused.ok and BROKEN_WHERE.search(refused.text), refused

    assert session.put("reports", FILE_REPORTS).ok
    assert session.put("spare", SPARE).ok
    assert session.listing() == (None, ["reports", "spare"])
    assert session.activate("reports").ok
    assert session.listing() == ("reports", ["reports", "spare"])
    assert session.get("reports").splitlines() == FILE_REPORTS.splitlines()

    refused = session.delete("reports")
    assert (refused.ok, refused.code) == (False, "ACTIVE"), refused
    spare = "spare"
    if session.can_rename:
        refused = session.rename("spare", "reports")
        assert (refused.ok, refused.code) == (False, "ALREADYEXISTS"), refused
        assert session.rename("spare", "spare (old)").ok
        spare = "spare (old)"
        assert session.listing() == ("reports", ["reports", spare])
    assert session.delete(spare).ok
    refused = session.delete(spare)
    assert (refused.ok, refused.code) == (False, "NONEXISTENT"), refused
    assert session.listing() == ("reports", ["reports"])

    await deliver(server, "Quarterly report")
    await deliver(server, "Lunch on Friday")
    assert mailbox_of(mda, "Quarterly report") == "Work"
    assert mailbox_of(mda, "Lunch on Friday") == "INBOX"


@pytest.mark.parametrize("kind", CLIENTS)
async def test_activation_and_reupload_apply_to_the_next_delivery(
        kind: str, serve, connect, mda: Run) -> None:
    server = serve()
    session = connect(kind, server)
    version = 'require ["fileinto", "mailbox"];\nfileinto :create "{}";\n'.format

    assert session.put("main", version("First")).ok
    await deliver(server, "before any activation")
    assert session.activate("main").ok
    await deliver(server, "one")
    assert session.put("main", version("Second")).ok  # replaces the active script
    await deliver(server, "two")
    assert session.put("other", version("Other")).ok
    assert session.activate("other").ok
    await deliver(server, "three")
    assert session.activate("").ok
    await deliver(server, "four")

    assert [mailbox_of(mda, s) for s in ("before any activation", "one", "two", "three",
                                         "four")] == ["INBOX", "First", "Second", "Other",
                                                      "INBOX"]


@pytest.mark.parametrize("kind", ["sievelib", "managesieve"])
@pytest.mark.parametrize("mechanism, wire", [
    # sievelib: PLAIN's initial response quoted on the command line; LOGIN's two answers
    # pipelined as quoted strings before any challenge arrives.
    ("PLAIN", {"sievelib": rb'AUTHENTICATE "PLAIN" "[A-Za-z0-9+/=]+"\r\n',
               "managesieve": rb'AUTHENTICATE "PLAIN" \{\d+\+\}\r\n[A-Za-z0-9+/=]+\r\n'}),
    # managesieve: LOGIN's user name as an initial response, the password on the next line.
    ("LOGIN", {"sievelib": rb'AUTHENTICATE "LOGIN"\r\n"[A-Za-z0-9+/=]+"\r\n"[A-Za-z0-9+/=]+"\r\n',
               "managesieve": rb'AUTHENTICATE "LOGIN" "[A-Za-z0-9+/=]+"\r\n"[A-Za-z0-9+/=]+"\r\n'}),
])
def test_python_clients_sasl_wire_forms(kind: str, mechanism: str, wire: dict[str, bytes],
                                        serve, connect) -> None:
    server = serve()
    with RecordingProxy((server.managesieve_host, server.managesieve_port)) as relay:
        session = connect(kind, server, mechanism=mechanism, port=relay.port)
        assert session.put("main", FILE_REPORTS).ok
        assert session.listing() == (None, ["main"])
        session.logout()
    assert re.search(wire[kind], bytes(relay.sent)), bytes(relay.sent)
    # Both Python clients send the script as a non-synchronizing literal.
    length = len(FILE_REPORTS.replace("\n", "\r\n").encode()) if kind == "sievelib" \
        else len(FILE_REPORTS.encode())
    assert f'PUTSCRIPT "main" {{{length}+}}\r\n'.encode() in relay.sent, bytes(relay.sent)


@pytest.mark.parametrize("mechanism, sent", [
    (None, r'>>> AUTHENTICATE "PLAIN" \{\d+\+\}\\r\\n\n>>> [A-Za-z0-9+/=]+\\r\\n'),
    ("LOGIN", r'>>> AUTHENTICATE "LOGIN"\\r\\n\n(.*\n)*?>>> \{\d+\+\}\\r\\n\n>>> [A-Za-z0-9+/=]+'),
])
def test_sieve_connect_sasl_and_starttls_resync(mechanism: str | None, sent: str, serve,
                                                 connect, test_pki: TestPKI) -> None:  # noqa: F811
    server = serve(test_pki)
    session = connect("sieve-connect", server, test_pki, mechanism=mechanism)
    assert isinstance(session, SieveConnectSession)
    run = session.run(["list"])
    assert run.returncode == 0, run
    assert re.search(sent, run.stderr), run.stderr
    # After STARTTLS sieve-connect resynchronises with NOOP and waits for its tag.
    assert '>>> NOOP "STARTTLS-RESYNC-CAPA"' in run.stderr, run.stderr
    assert re.search(r'<<< OK \(TAG "STARTTLS-RESYNC-CAPA"\)', run.stderr), run.stderr


@pytest.mark.parametrize("kind", CLIENTS)
def test_wrong_password_is_refused_with_a_reason(kind: str, serve, connect) -> None:
    server = serve(MDA_MANAGESIEVE_AUTH_FAILURE_DELAY="0")
    with pytest.raises(LoginFailed) as failure:
        connect(kind, server, password="not the password")
    assert re.search(r"NO|refused", str(failure.value)), failure.value
    assert server.proc.poll() is None
    connect(kind, server)  # the right password still works from the same peer


@pytest.mark.parametrize("kind", CLIENTS)
def test_quota_refusals_reach_the_client(kind: str, serve, connect) -> None:
    server = serve(MDA_SIEVE_MAX_SCRIPTS="2", MDA_SIEVE_MAX_SCRIPT_SIZE="200")
    session = connect(kind, server)
    big = FILE_REPORTS + "# padding\n" * 20
    if session.can_havespace:
        refused = session.havespace("big", len(big))
        assert (refused.ok, refused.code) == (False, "QUOTA/MAXSIZE"), refused
        assert session.havespace("big", 200).ok
    refused = session.put("big", big)
    assert (refused.ok, refused.code) == (False, "QUOTA/MAXSIZE"), refused
    assert session.put("one", SPARE).ok
    assert session.put("two", SPARE).ok
    assert session.put("two", FILE_REPORTS).ok  # replacing does not count as a third
    refused = session.put("three", SPARE)
    assert (refused.ok, refused.code) == (False, "QUOTA/MAXSCRIPTS"), refused
    assert session.listing() == (None, ["one", "two"])


def test_names_and_scripts_round_trip_between_clients(serve, connect) -> None:
    server = serve()
    name = "Büro ✓ filters"
    source = 'require "fileinto";\r\n# Grüße\r\nif header :contains "subject" "Bericht" ' \
             '{\r\n    fileinto "Archive";\r\n}\r\n'
    first = connect("managesieve", server)
    assert first.put(name, source).ok
    assert first.activate(name).ok
    assert first.get(name) == source  # the literal comes back octet for octet

    for kind in ("sievelib", "sieve-connect"):
        other = connect(kind, server)
        assert other.listing() == (name, [name]), kind
        assert other.get(name).splitlines() == source.splitlines(), kind


def test_compiler_warnings_reach_the_client(serve, connect) -> None:
    """A script that would send mail while no submission is configured is stored with
    `OK (WARNINGS) "..."`; the managesieve package must hand the code and the text to its
    caller. That package reads the response code up to the *last* `)` on the line
    (`\\((?P<code>.*)\\)`), so a `)` in the text after a response code turns the text into
    part of the code; the server has to keep `)` out of such texts."""
    server = serve()
    session = connect("managesieve", server)
    stored = session.put("away", 'require "vacation";\nvacation "I am away.";\n')
    assert stored.ok and stored.code == "WARNINGS" and "vacation" in stored.text, stored
    assert session.listing() == (None, ["away"])


def test_name_with_a_double_quote(serve, connect) -> None:
    """sieve-connect sends such a name to PUTSCRIPT as a `{N+}` literal; mda lists it as a
    quoted string with `\\"`, which the managesieve package reads back exactly, and
    sievelib's escaped quoted strings reach the same script. (sievelib's own LISTSCRIPTS
    parser does not unescape, and sieve-connect's DELETESCRIPT does not escape, so each
    client is used here only where it gets such names right.)"""
    server = serve()
    uploader = connect("sieve-connect", server)
    assert isinstance(uploader, SieveConnectSession)
    run = uploader.run([f'upload {uploader.file(SPARE)} say"hi"'])
    assert run.returncode == 0, run
    assert re.search(r'>>> PUTSCRIPT \{7\+\}\\r\\nsay"hi" \{\d+\+\}', run.stderr), run.stderr
    assert connect("managesieve", server).listing() == (None, ['say"hi"'])

    sievelib = connect("sievelib", server)
    assert sievelib.get('say"hi"').splitlines() == SPARE.splitlines()
    assert sievelib.put('a \\ and a "', SPARE).ok
    assert sievelib.delete('say"hi"').ok
    assert connect("managesieve", server).listing() == (None, ['a \\ and a "'])


def test_unauthenticate_then_another_user(serve, connect, mda: Run) -> None:
    """UNAUTHENTICATE (which Dovecot lacks) through the managesieve package: the same
    connection logs in as a second user and sees only that user's scripts."""
    server = serve()
    add_user(mda, "bob@example.org", "bobs password")
    alice = connect("managesieve", server)
    assert isinstance(alice, PyManageSieveSession)
    assert alice.put("alice-only", SPARE).ok
    assert alice.unauthenticate().ok
    assert alice.login("bob@example.org", "bobs password").ok
    assert alice.listing() == (None, [])
    refused = alice.activate("alice-only")
    assert (refused.ok, refused.code) == (False, "NONEXISTENT"), refused
    assert alice.put("bob-only", SPARE).ok
    assert connect("sievelib", server).listing() == (None, ["alice-only"])


def test_starttls_needs_the_test_ca(serve, test_pki: TestPKI, connect) -> None:  # noqa: F811
    """The clients really verify: without the test CA the handshake fails, so the passing
    STARTTLS tests show the server sent the configured certificate."""
    server = serve(test_pki)
    client = Client(server.managesieve_host, server.managesieve_port)
    with pytest.raises(SievelibError, match="CERTIFICATE_VERIFY_FAILED"):
        client.connect(USER, PASSWORD, starttls=True)
    session = connect("sievelib", server, test_pki)
    assert isinstance(session, SievelibSession)
    assert "STARTTLS" not in session.capabilities()  # not offered again inside TLS


def test_implicit_tls_listener(serve, test_pki: TestPKI) -> None:  # noqa: F811
    """sievelib's `ssl=True` against MDA_MANAGESIEVE_TLS_LISTEN: TLS from the first octet,
    no STARTTLS offered, PLAIN accepted, and the usual commands work."""
    server = serve(test_pki, MDA_MANAGESIEVE_TLS_LISTEN="127.0.0.1:0")
    assert server.managesieve_tls_where, server.log_text()
    client = Client(server.managesieve_host, server.managesieve_tls_port)
    with trusting(test_pki):
        assert client.connect(USER, PASSWORD, ssl=True, authmech="PLAIN"), client.errmsg
    try:
        assert not client.has_tls_support()
        assert client.putscript("reports", FILE_REPORTS)
        assert client.setactive("reports")
        assert client.listscripts() == ("reports", [])
    finally:
        client.logout()


DOCS = Path(__file__).resolve().parents[2] / "docs" / "managesieve.md"


def _wire_lines(trace: str) -> list[str]:
    """The `>>>`/`<<<` lines of a sieve-connect trace, with what varies between runs (the
    implementation version, the length of the PLAIN message, the password) made equal."""
    lines = []
    for line in trace.splitlines():
        if not line.startswith((">>> ", "<<< ")):
            continue
        line = re.sub(r'"IMPLEMENTATION" "mda [^"]*"', '"IMPLEMENTATION" "mda"', line)
        line = re.sub(r'AUTHENTICATE "PLAIN" \{\d+\+\}', 'AUTHENTICATE "PLAIN" {N+}', line)
        lines.append(line)
    return lines


def test_documented_session_is_what_the_server_says(serve, connect,
                                                   test_pki: TestPKI) -> None:  # noqa: F811
    """docs/managesieve.md shows one sieve-connect session; the same commands today must
    produce every wire line shown there, in that order."""
    text = DOCS.read_text()
    section = text[text.index("## A working session"):]
    shown = _wire_lines(section[section.index("```\n$ sieve-connect"):
                                section.index("\n```\n", section.index("```\n$ sieve-connect"))])
    assert len(shown) > 30, shown

    server = serve(test_pki)
    session = connect("sieve-connect", server, test_pki)
    assert isinstance(session, SieveConnectSession)
    broken = session.file(BROKEN)
    reports = session.file(FILE_REPORTS)
    run = session.run([f"checkscript {broken}", f"upload {reports} reports",
                       "activate reports", "list", "view reports", "quit"])
    assert run.returncode == 1 and "CHECKSCRIPT failed" in run.stderr, run  # the broken one
    actual = iter(_wire_lines(run.stderr))
    for line in shown:
        if line == ">>> ********\\r\\n":  # the password, replaced in the docs
            next(actual)
            continue
        assert any(line == seen for seen in actual), f"{line!r} not in the session:\n{run.stderr}"
