"""`mda user add --password-stdin`, `user passwd`, `user import-passwd`, `user show/list`
through the real `mda` command, on the database of the backend under test."""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import subprocess
import termios
from collections.abc import Callable
from pathlib import Path

import pytest

from mda.passwords import verify_password
from mda.store import Store, get_user, list_users
from tests.cli.conftest import Run, as_json, assert_one_line_error
from tests.conftest import MDA_BIN


def stored_hash(url: str, address: str) -> str | None:
    """The password hash the database holds for a user."""

    async def run() -> str | None:
        async with Store(url) as store, store.read() as session:
            return (await get_user(session, address)).password_hash

    return asyncio.run(run())


def addresses(url: str) -> list[str]:
    """Every user's address, read from the database."""

    async def run() -> list[str]:
        async with Store(url) as store, store.read() as session:
            return [u.address for u in await list_users(session)]

    return asyncio.run(run())


def dovecot_hash(doveadm: str, scheme: str, password: str) -> str:
    """A hash made by Dovecot's `doveadm pw`."""
    return subprocess.run([doveadm, "pw", "-s", scheme, "-p", password], capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def test_add_with_password_stdin_hashes_the_first_line(cli: Run, database_url: str) -> None:
    out = cli("user", "add", "joe@example.com", "--password-stdin",
              input=" spaced Pässwörd \r\nsecond line\n".encode())
    assert out.returncode == 0 and out.stdout == b"added joe@example.com\n", out.stderr
    stored = stored_hash(database_url, "joe@example.com")
    assert stored is not None and stored.startswith("{ARGON2ID}$argon2id$")
    assert verify_password(stored, " spaced Pässwörd ")
    assert not verify_password(stored, " spaced Pässwörd \r")
    assert not verify_password(stored, "spaced Pässwörd")
    show = cli("user", "show", "joe@example.com", check=True)
    assert show.stdout.decode().splitlines() == [
        "address  joe@example.com", "password set (ARGON2ID)",
        "storage  0 / unlimited bytes", "messages 0 / unlimited"]
    assert as_json(cli("user", "show", "joe@example.com", "--json")) == {
        "address": "joe@example.com", "password_set": True, "password_scheme": "ARGON2ID",
        "storage_used": 0, "storage_limit": None, "messages_used": 0, "messages_limit": None}
    listed = cli("user", "list", check=True).stdout + cli("user", "list", "--json").stdout
    assert b"password" in listed and stored.encode() not in listed + show.stdout
    assert b"$argon2" not in listed + show.stdout


@pytest.mark.parametrize(("stdin", "reason"), [
    (b"\n", "empty password on standard input"),
    (b"", "empty password on standard input"),
    (b"\r\n", "empty password on standard input"),
    (b"caf\xe9\n", "not valid UTF-8"),
])
def test_add_refuses_a_bad_password_and_adds_nobody(cli: Run, database_url: str, stdin: bytes,
                                                    reason: str) -> None:
    assert_one_line_error(cli("user", "add", "joe@example.com", "--password-stdin",
                              input=stdin), reason)
    assert addresses(database_url) == []


def test_passwd_sets_replaces_and_clears(cli: Run, database_url: str) -> None:
    cli("user", "add", "joe@example.com", check=True)
    assert stored_hash(database_url, "joe@example.com") is None
    assert as_json(cli("user", "list", "--json"))[0]["password_set"] is False
    assert b"joe@example.com  no password  storage" in cli("user", "list", check=True).stdout
    assert "password none (cannot log in)" in cli("user", "show", "joe@example.com",
                                                   check=True).stdout.decode()

    out = cli("user", "passwd", "joe@example.com", "--password-stdin", input=b"first\n",
              check=True)
    assert out.stdout == b"joe@example.com: password set\n"
    first = stored_hash(database_url, "joe@example.com")
    assert first is not None and verify_password(first, "first")
    cli("user", "passwd", "joe@example.com", "--password-stdin", input=b"second\n", check=True)
    second = stored_hash(database_url, "joe@example.com")
    assert second is not None and verify_password(second, "second")
    assert not verify_password(second, "first")

    assert_one_line_error(cli("user", "passwd", "joe@example.com", "--password-stdin",
                              input=b"\n"), "empty password")
    assert_one_line_error(cli("user", "passwd", "joe@example.com", "--clear",
                              "--password-stdin"), "exclude each other")
    assert_one_line_error(cli("user", "passwd", "joe@example.com", input=b"third\n"),
                          "not a terminal", "--password-stdin")
    assert_one_line_error(cli("user", "passwd", "nobody@example.com", "--password-stdin",
                              input=b"x\n"), "no user nobody@example.com")
    assert stored_hash(database_url, "joe@example.com") == second

    out = cli("user", "passwd", "joe@example.com", "--clear", check=True)
    assert out.stdout == b"joe@example.com: password removed (ManageSieve login disabled)\n"
    assert stored_hash(database_url, "joe@example.com") is None
    assert as_json(cli("user", "show", "joe@example.com", "--json"))["password_set"] is False


class Terminal:
    """`mda ARGS` with a pseudo-terminal as its controlling terminal and stdin/stdout/stderr."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()

        def take_terminal() -> None:  # in the child, after setsid (start_new_session)
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([MDA_BIN, *args], stdin=slave, stdout=slave, stderr=slave,
                                     env=env, start_new_session=True, preexec_fn=take_terminal)
        os.close(slave)
        self.transcript = b""
        self.seen = 0  # where the last expected text ended

    def expect(self, text: bytes, timeout: float = 60) -> None:
        """Read until `text` has appeared after the previous expected text."""
        while (found := self.transcript.find(text, self.seen)) < 0:
            ready, _, _ = select.select([self.master], [], [], timeout)
            assert ready, (text, self.transcript)
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            assert chunk, (text, self.transcript)
            self.transcript += chunk
        self.seen = found + len(text)

    def send(self, line: bytes) -> None:
        os.write(self.master, line + b"\r")

    def finish(self) -> int:
        """Wait for the exit status, reading what is left."""
        while True:
            ready, _, _ = select.select([self.master], [], [], 60)
            try:
                chunk = os.read(self.master, 4096) if ready else b""
            except OSError:
                chunk = b""
            if not chunk:
                break
            self.transcript += chunk
        os.close(self.master)
        return self.proc.wait(timeout=60)


def test_passwd_prompts_twice_on_a_terminal_without_echo(cli: Run, database_url: str,
                                                         mda_env: dict[str, str]) -> None:
    cli("user", "add", "joe@example.com", check=True)
    term = Terminal(["user", "passwd", "joe@example.com"], mda_env)
    term.expect(b"New password:")
    term.send("typed Secret1".encode())
    term.expect(b"Retype new password:")
    term.send(b"a different one")
    term.expect(b"do not match")
    term.expect(b"New password:")
    term.send("typed Secret2 é".encode())
    term.expect(b"Retype new password:")
    term.send("typed Secret2 é".encode())
    assert term.finish() == 0, term.transcript
    assert b"joe@example.com: password set" in term.transcript
    assert b"Secret" not in term.transcript and b"different" not in term.transcript
    stored = stored_hash(database_url, "joe@example.com")
    assert stored is not None and verify_password(stored, "typed Secret2 é")


@pytest.fixture
def passwd_file(tmp_path: Path, require_tool: Callable[[str], str]) -> Path:
    """A realistic Dovecot passwd-file with one hash of each scheme, made by doveadm."""
    doveadm = require_tool("doveadm")
    lines = [
        "# Dovecot users, exported from mail.example.org",
        "",
        f"alice@example.org:{dovecot_hash(doveadm, 'ARGON2ID', 'alice pw')}:5000:5000:"
        f"Alice:/srv/vmail/alice::userdb_quota_rule=*:storage=1G userdb_mail=maildir:~/Maildir",
        f"bob@Example.ORG:{dovecot_hash(doveadm, 'SHA512-CRYPT', 'bob pw')}:5000:5000::"
        f"/srv/vmail/bob::userdb_quota_rule=*:bytes=500000:messages=100 "
        f"userdb_quota_rule2=Trash:storage=+100M",
        f"carol@example.org:{dovecot_hash(doveadm, 'BLF-CRYPT', 'carol pw')}",
        f"dave@example.org:{dovecot_hash(doveadm, 'SHA256-CRYPT', 'dave pw')}::::::",
        f"erin@example.org:{dovecot_hash(doveadm, 'ARGON2I', 'erin pw')}:5000:5000",
        "   ",
        "# frank moved away",
        "#frank@example.org:{PLAIN}frank pw",
        "grace@example.org:{PLAIN}grace pw:5000:5000::/srv/vmail/grace::"
        "quota_rule=*:storage=2048 nopassword",
        f"heidi@example.org:{dovecot_hash(doveadm, 'CLEAR', 'heidi pw')}",
        "ivan@example.org::5000:5000::/srv/vmail/ivan",
    ]
    path = tmp_path / "users"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


PASSWORDS = {"alice": "alice pw", "bob": "bob pw", "carol": "carol pw", "dave": "dave pw",
             "erin": "erin pw", "grace": "grace pw", "heidi": "heidi pw"}


def check_imported(url: str, run: Run) -> None:
    """Every imported user logs in with their password and has the file's quota."""
    for name, password in PASSWORDS.items():
        stored = stored_hash(url, f"{name}@example.org")
        assert stored is not None and verify_password(stored, password), name
        assert not verify_password(stored, password + "x"), name
    assert stored_hash(url, "ivan@example.org") is None
    users = {u["address"]: u for u in as_json(run("user", "list", "--json"))}
    assert users["alice@example.org"]["storage_limit"] == 1024**3
    assert (users["bob@example.org"]["storage_limit"],
            users["bob@example.org"]["messages_limit"]) == (500000, 100)
    assert users["grace@example.org"]["storage_limit"] == 2048 * 1024
    assert users["carol@example.org"]["storage_limit"] is None
    schemes = {a: as_json(run("user", "show", a, "--json"))["password_scheme"]
               for a in ("alice@example.org", "bob@example.org", "grace@example.org",
                         "heidi@example.org", "ivan@example.org")}
    assert schemes == {"alice@example.org": "ARGON2ID", "bob@example.org": "SHA512-CRYPT",
                       "grace@example.org": "ARGON2ID", "heidi@example.org": "ARGON2ID",
                       "ivan@example.org": None}


def test_import_realistic_passwd_file(cli: Run, database_url: str, passwd_file: Path) -> None:
    cli("user", "add", "bob@example.org", "--quota-storage", "1K", check=True)
    cli("user", "add", "zed@example.org", "--password-stdin", input=b"zed pw\n", check=True)
    zed = stored_hash(database_url, "zed@example.org")

    dry = cli("user", "import-passwd", str(passwd_file), "--dry-run", check=True)
    lines = dry.stdout.decode().splitlines()
    assert lines[:9] == [
        "added alice@example.org", "updated bob@example.org (password, quota)",
        "added carol@example.org", "added dave@example.org", "added erin@example.org",
        "added grace@example.org", "added heidi@example.org", "added ivan@example.org",
        "added 7, updated 1, unchanged 0"]
    assert lines[-1] == "dry run: nothing was written"
    assert addresses(database_url) == ["bob@example.org", "zed@example.org"]
    assert stored_hash(database_url, "bob@example.org") is None

    out = cli("user", "import-passwd", str(passwd_file), check=True)
    assert out.stdout.decode().splitlines() == lines[:9] + [
        "note: stored 2 PLAIN passwords as ARGON2ID, not as plain text",
        "note: no password, so no ManageSieve login: ivan@example.org",
        "note: extra fields ignored: userdb_mail, userdb_quota_rule2, nopassword",
    ]
    assert out.stderr == b""
    check_imported(database_url, cli)
    assert stored_hash(database_url, "zed@example.org") == zed  # not in the file: untouched
    assert not any("{PLAIN}" in (stored_hash(database_url, a) or "")
                   for a in addresses(database_url))
    if database_url.startswith("sqlite"):  # nor anywhere else in the file
        assert b"{PLAIN}" not in Path(database_url.split("///", 1)[1]).read_bytes()

    again = cli("user", "import-passwd", str(passwd_file), check=True).stdout.decode()
    assert "added 0, updated 0, unchanged 8" in again
    assert "note: stored" not in again  # PLAIN passwords already verify: hashes kept
    check_imported(database_url, cli)


@pytest.mark.parametrize(("line", "reason"), [
    ("mallory@example.org:{MD5}1a1dc91c907325c69271ddf0c944bc72:5000:5000",
     "line 5: mallory@example.org: unknown password scheme {MD5}"),
    ("mallory:{PLAIN}pw", "line 5: bad address: 'mallory' has no @domain"),
    ("mallory@example.org:{PLAIN}pw::::::userdb_quota_rule=*:storage=10%",
     "line 5: mallory@example.org: userdb_quota_rule=*:storage=10%: relative limit"),
])
def test_a_bad_line_imports_nothing(cli: Run, database_url: str, tmp_path: Path, line: str,
                                    reason: str) -> None:
    cli("user", "add", "old@example.org", check=True)
    path = tmp_path / "users"
    path.write_text("# users\nnew@example.org:{PLAIN}new pw\nold@example.org:{PLAIN}old pw\n\n"
                    f"{line}\nlast@example.org:{{PLAIN}}last pw\n")
    assert_one_line_error(cli("user", "import-passwd", str(path)), f"{path}: {reason}")
    assert addresses(database_url) == ["old@example.org"]
    assert stored_hash(database_url, "old@example.org") is None


def test_import_from_stdin_with_domain(cli: Run, database_url: str) -> None:
    data = b"alice:{PLAIN}alice pw\nbob@other.example:{PLAIN}bob pw\n"
    assert_one_line_error(cli("user", "import-passwd", "-", input=data),
                          "<stdin>: line 1: bad address", "--domain")
    out = cli("user", "import-passwd", "-", "--domain", "Example.ORG", input=data, check=True)
    assert out.stdout.decode().splitlines()[:3] == [
        "added alice@example.org", "added bob@other.example", "added 2, updated 0, unchanged 0"]
    alice = stored_hash(database_url, "alice@example.org")
    assert alice is not None and verify_password(alice, "alice pw")


def test_missing_file_is_one_line(cli: Run, tmp_path: Path) -> None:
    assert_one_line_error(cli("user", "import-passwd", str(tmp_path / "nope")), "nope")
