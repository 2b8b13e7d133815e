"""Three real ManageSieve clients (RFC 5804) behind one small interface, for acceptance tests.

- `SievelibSession`: sievelib's `sievelib.managesieve.Client` (Python). Sends scripts as
  `{N+}` literals, the PLAIN initial response as a quoted string on the AUTHENTICATE line,
  and LOGIN's two answers pipelined as quoted strings without waiting for the challenges.
  Its `getscript` rejoins lines with LF and drops the last line end.
- `PyManageSieveSession`: the PyPI `managesieve` package (Python). Sends the PLAIN initial
  response as a `{N+}` literal, LOGIN's user name inline on the AUTHENTICATE line and the
  password pipelined on the next line; quotes names without escaping; has no RENAMESCRIPT
  or CHECKSCRIPT.
- `SieveConnectSession`: Debian's `sieve-connect` (Perl), one process per operation driven
  by `--exec`, password through `--passwordfd 0`. Sends the PLAIN initial response as a
  `{N+}` literal on the next line, after STARTTLS sends `NOOP "STARTTLS-RESYNC-CAPA"` and
  waits for that tag, uploads files byte for byte (LF line ends), has no rename.
  Any warning (an odd capability line included) makes it exit 1, which the session reports.

Each operation returns an `Outcome` (or the listing / the script text); a refusal is an
`Outcome` with `ok=False` and the server's response code and human-readable text, so tests
assert what reached the user. Over STARTTLS every client verifies the server certificate
against the test CA only (`tests/managesieve/tls.py`).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import managesieve
from sievelib.managesieve import Client

from tests.managesieve.tls import TestPKI


@dataclass(frozen=True)
class Outcome:
    """What the server answered to one client operation.

    Attributes:
        ok: the command succeeded (`OK`, and for sieve-connect exit status 0).
        code: the response code without parentheses (`"ACTIVE"`, `"QUOTA/MAXSIZE"`), or "".
        text: the human-readable text the client shows (for sieve-connect, its stderr).
    """

    ok: bool
    code: str = ""
    text: str = ""


@dataclass(frozen=True)
class Account:
    """Where and as whom a client connects.

    Attributes:
        host, port: the plain ManageSieve listener.
        user: the authentication identity (the mda address).
        password: its password.
        pki: when set, the client issues STARTTLS and trusts only `pki.ca_file`.
        mechanism: the SASL mechanism to force (`"PLAIN"`, `"LOGIN"`); None = the client's
            own choice.
    """

    host: str
    port: int
    user: str
    password: str
    pki: TestPKI | None = None
    mechanism: str | None = None


class LoginFailed(AssertionError):
    """The client could not authenticate; the message carries what it reported."""


class ClientSession(ABC):
    """One logged-in session of a real client. Subclasses say what the client supports."""

    label: str
    can_rename: bool = False
    can_check: bool = False
    can_havespace: bool = False

    @abstractmethod
    def put(self, name: str, source: str) -> Outcome:
        """PUTSCRIPT `source` (UTF-8) as `name` (RFC 5804 §2.6)."""

    @abstractmethod
    def check(self, source: str) -> Outcome:
        """CHECKSCRIPT `source` (RFC 5804 §2.12); only when `can_check`."""

    @abstractmethod
    def activate(self, name: str) -> Outcome:
        """SETACTIVE `name`; `""` deactivates (RFC 5804 §2.8)."""

    @abstractmethod
    def listing(self) -> tuple[str | None, list[str]]:
        """LISTSCRIPTS: (the active script or None, every name sorted) (RFC 5804 §2.7)."""

    @abstractmethod
    def get(self, name: str) -> str:
        """GETSCRIPT `name`, as the client hands it to its user (RFC 5804 §2.9)."""

    @abstractmethod
    def rename(self, old: str, new: str) -> Outcome:
        """RENAMESCRIPT (RFC 5804 §2.11.1); only when `can_rename`."""

    @abstractmethod
    def delete(self, name: str) -> Outcome:
        """DELETESCRIPT `name` (RFC 5804 §2.10)."""

    def havespace(self, name: str, size: int) -> Outcome:
        """HAVESPACE `name` `size` (RFC 5804 §2.5); only when `can_havespace`."""
        raise NotImplementedError(f"{self.label} has no HAVESPACE")

    @abstractmethod
    def logout(self) -> None:
        """LOGOUT and close."""


@contextlib.contextmanager
def trusting(pki: TestPKI | None) -> Iterator[None]:
    """Make `ssl.create_default_context()` trust only the test CA while the block runs.

    Both Python clients build their TLS context with `ssl.create_default_context()` and take
    no CA argument; OpenSSL reads the documented `SSL_CERT_FILE` variable when that context
    loads its default trust anchors.
    """
    if pki is None:
        yield
        return
    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(pki.ca_file)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["SSL_CERT_FILE"]
        else:
            os.environ["SSL_CERT_FILE"] = saved


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class SievelibSession(ClientSession):
    """sievelib's `Client`, logged in (see the module docstring for its wire habits)."""

    label = "sievelib"
    can_rename = True
    can_check = True
    can_havespace = True

    def __init__(self, account: Account) -> None:
        self.client = Client(account.host, account.port)
        with trusting(account.pki), warnings.catch_warnings():
            # Plaintext on loopback is what the plain tests mean to do.
            warnings.filterwarnings("ignore", "Credentials are sent over an unencrypted")
            ok = self.client.connect(account.user, account.password,
                                     starttls=account.pki is not None,
                                     authmech=account.mechanism)
        if not ok:
            raise LoginFailed(f"sievelib login refused: {self._outcome(False)}")

    def _outcome(self, ok: bool) -> Outcome:
        if ok:
            return Outcome(True)
        return Outcome(False, _text(self.client.errcode), _text(self.client.errmsg))

    def put(self, name: str, source: str) -> Outcome:
        return self._outcome(self.client.putscript(name, source))

    def check(self, source: str) -> Outcome:
        return self._outcome(self.client.checkscript(source))

    def activate(self, name: str) -> Outcome:
        return self._outcome(self.client.setactive(name))

    def listing(self) -> tuple[str | None, list[str]]:
        result = self.client.listscripts()
        assert result is not None, self._outcome(False)
        active, others = result
        return active, sorted(others + ([active] if active else []))

    def get(self, name: str) -> str:
        text = self.client.getscript(name)
        assert text is not None, self._outcome(False)
        return text

    def rename(self, old: str, new: str) -> Outcome:
        return self._outcome(self.client.renamescript(old, new))

    def delete(self, name: str) -> Outcome:
        return self._outcome(self.client.deletescript(name))

    def havespace(self, name: str, size: int) -> Outcome:
        return self._outcome(self.client.havespace(name, size))

    def capabilities(self) -> str:
        """The CAPABILITY response lines as sent (for checks after login)."""
        return _text(self.client.capability())

    def logout(self) -> None:
        if self.client.sock is not None:
            self.client.logout()
            self.client.sock.close()
            self.client.sock = None


class PyManageSieveSession(ClientSession):
    """The PyPI `managesieve` package's `MANAGESIEVE`, logged in."""

    label = "managesieve"
    can_havespace = True

    def __init__(self, account: Account) -> None:
        with trusting(account.pki):
            self.client = managesieve.MANAGESIEVE(account.host, account.port,
                                                  use_tls=account.pki is not None,
                                                  timeout=10)
        if account.mechanism is None:
            typ = self.client.login("", account.user, account.password)
        else:
            typ = self.client.authenticate(account.mechanism, account.user, account.password)
        if typ != "OK":
            raise LoginFailed(f"managesieve login refused: {self._outcome(typ)}")

    def _outcome(self, typ: str) -> Outcome:
        """The response code and text are kept for OK too (`OK (WARNINGS) "..."`)."""
        return Outcome(typ == "OK", _text(self.client.response_code),
                       _text(self.client.response_text))

    def put(self, name: str, source: str) -> Outcome:
        return self._outcome(self.client.putscript(name, source))

    def check(self, source: str) -> Outcome:
        raise NotImplementedError("the managesieve package has no CHECKSCRIPT")

    def activate(self, name: str) -> Outcome:
        return self._outcome(self.client.setactive(name))

    def listing(self) -> tuple[str | None, list[str]]:
        typ, scripts = self.client.listscripts()
        assert typ == "OK", self._outcome(typ)
        active = [name for name, is_active in scripts if is_active]
        assert len(active) <= 1, scripts
        return (active[0] if active else None), sorted(name for name, _ in scripts)

    def get(self, name: str) -> str:
        typ, text = self.client.getscript(name)
        assert typ == "OK", self._outcome(typ)
        return text

    def rename(self, old: str, new: str) -> Outcome:
        raise NotImplementedError("the managesieve package has no RENAMESCRIPT")

    def delete(self, name: str) -> Outcome:
        return self._outcome(self.client.deletescript(name))

    def havespace(self, name: str, size: int) -> Outcome:
        return self._outcome(self.client.havespace(name, size))

    def unauthenticate(self) -> Outcome:
        """UNAUTHENTICATE (RFC 5804 §2.14): back to the non-authenticated state."""
        return self._outcome(self.client.unauthenticate())

    def login(self, user: str, password: str) -> Outcome:
        """AUTHENTICATE again on the same connection (after `unauthenticate`)."""
        return self._outcome(self.client.login("", user, password))

    def logout(self) -> None:
        if self.client.state != "LOGOUT":
            self.client.logout()


@dataclass(frozen=True)
class SieveConnectRun:
    """One finished `sieve-connect` process.

    Attributes:
        argv: the command line (no password on it).
        returncode: its exit status (0 = every command succeeded without a warning).
        stdout: what it printed (listings, `view` output).
        stderr: warnings and refusals, and the `--debug` wire trace (`>>>` sent, `<<<`
            received, CR and LF shown as `\\r`, `\\n`).
    """

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


_LISTED = re.compile(r'^"(?P<name>[^"]*)"(?P<active> ACTIVE)?$')
# The warning sieve-connect prints for a refused command, e.g.
# `PUTSCRIPT(x) failed: NO (QUOTA/MAXSIZE) "..."` or `CHECKSCRIPT failed: NO "..."`.
_REFUSAL = re.compile(r"^[A-Z]+(?:\(.*\))? failed: NO(?: \((?P<code>[^)]*)\))?(?P<text>.*)$",
                      re.M)


class SieveConnectSession(ClientSession):
    """`sieve-connect`, one process (connect, STARTTLS, AUTHENTICATE, command, LOGOUT) per
    operation, commands given through `--exec FILE`."""

    label = "sieve-connect"
    can_check = True

    def __init__(self, account: Account, program: str, workdir: Path) -> None:
        self.account = account
        self.program = program
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._files = count(1)
        probe = self.run(["list"])
        if probe.returncode != 0:
            raise LoginFailed(f"sieve-connect could not log in: {probe.stderr}")

    def argv(self) -> list[str]:
        """The command line without the action: server, user, TLS trust, mechanism, and
        `--debug` (the wire trace on stderr)."""
        account = self.account
        argv = [self.program, "--nosrv", "--server", account.host, "--port", str(account.port),
                "--user", account.user, "--passwordfd", "0"]
        if account.pki is None:
            # No STARTTLS offered: verification cannot happen, so say plaintext is wanted.
            argv.append("--clearchan")
        else:
            argv += ["--tlscafile", str(account.pki.ca_file)]
        if account.mechanism:
            argv += ["--authmech", account.mechanism]
        return [*argv, "--debug"]

    def run(self, commands: list[str]) -> SieveConnectRun:
        """Run `commands` (sieve-connect's own command language, one per line) in one
        session, with `--debug` so that a failure shows the wire trace.

        Returns:
            The finished process; one still running after 60 s is killed and returned with
            `returncode` -9 and what it had written so far.
        """
        script = self.workdir / f"commands-{next(self._files)}.txt"
        script.write_text("".join(f"{line}\n" for line in commands))
        argv = [*self.argv(), "--exec", str(script)]
        password = f"{self.account.password}\n".encode()
        try:
            proc = subprocess.run(argv, input=password, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired as exc:
            return SieveConnectRun(argv, -9, _text(exc.stdout), _text(exc.stderr))
        return SieveConnectRun(argv, proc.returncode, _text(proc.stdout), _text(proc.stderr))

    def file(self, source: str | bytes) -> Path:
        """Write `source` to a new local file (sieve-connect uploads files) and return it."""
        path = self.workdir / f"script-{next(self._files)}.sieve"
        path.write_bytes(source.encode() if isinstance(source, str) else source)
        return path

    def _outcome(self, commands: list[str]) -> Outcome:
        run = self.run(commands)
        if run.returncode == 0:
            return Outcome(True)
        match = _REFUSAL.search(run.stderr)
        if match is None:
            return Outcome(False, "", run.stderr)
        return Outcome(False, match.group("code") or "", match.group("text").strip())

    def put(self, name: str, source: str) -> Outcome:
        return self._outcome([f'upload {self.file(source)} "{name}"'])

    def check(self, source: str) -> Outcome:
        return self._outcome([f"checkscript {self.file(source)}"])

    def activate(self, name: str) -> Outcome:
        return self._outcome([f'activate "{name}"'] if name else ["deactivate"])

    def listing(self) -> tuple[str | None, list[str]]:
        run = self.run(["list"])
        assert run.returncode == 0, run
        names, active = [], None
        for line in run.stdout.splitlines():
            match = _LISTED.match(line)
            if match:
                names.append(match.group("name"))
                if match.group("active"):
                    active = match.group("name")
        return active, sorted(names)

    def get(self, name: str) -> str:
        target = self.workdir / f"download-{next(self._files)}.sieve"
        run = self.run([f'download "{name}" {target}'])
        assert run.returncode == 0, run
        return target.read_text()

    def rename(self, old: str, new: str) -> Outcome:
        raise NotImplementedError("sieve-connect has no rename command")

    def delete(self, name: str) -> Outcome:
        return self._outcome([f'delete "{name}"'])

    def logout(self) -> None:
        """Nothing to do: every operation ran in its own process, which logged out."""


@dataclass
class RecordingProxy:
    """A TCP relay on 127.0.0.1 in front of the ManageSieve listener that keeps a copy of
    every byte each way, so a test can show which wire form a client really used (a `{N+}`
    literal, a quoted initial response ...). Plaintext only: after STARTTLS it records
    ciphertext. Use as a context manager; `port` is where clients connect.

    Attributes:
        upstream: (host, port) of the server.
        sent: bytes the clients sent, all connections in order.
        received: bytes the server sent.
    """

    upstream: tuple[str, int]
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> RecordingProxy:
        self._start(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(10)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:  # listener closed by __exit__
                return
            upstream = socket.create_connection(self.upstream, timeout=30)
            self._start(self._pump, downstream, upstream, self.sent)
            self._start(self._pump, upstream, downstream, self.received)

    def _pump(self, source: socket.socket, target: socket.socket, copy: bytearray) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                with self._lock:
                    copy.extend(data)
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


CLIENTS = ("sievelib", "managesieve", "sieve-connect")


def open_session(kind: str, account: Account, workdir: Path,
                 sieve_connect: str | None = None) -> ClientSession:
    """Log in with the client named `kind` (one of `CLIENTS`).

    Args:
        kind: "sievelib", "managesieve" or "sieve-connect".
        account: where and as whom.
        workdir: a directory for sieve-connect's command and script files.
        sieve_connect: the path of the sieve-connect program (needed for that kind).

    Raises:
        LoginFailed: the server refused the login (the message says what the client showed).
    """
    if kind == "sievelib":
        return SievelibSession(account)
    if kind == "managesieve":
        return PyManageSieveSession(account)
    assert kind == "sieve-connect" and sieve_connect, kind
    return SieveConnectSession(account, sieve_connect, workdir)
