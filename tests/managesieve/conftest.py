"""A raw ManageSieve client and a real `mda serve` with users who have passwords.

`SieveWire` talks bytes over a real socket: `send` writes exactly what the test gives,
`response()` reads lines up to the final `OK`/`NO`/`BYE` (reading literals by their octet
count) and returns a `Response` holding the exact bytes received. `sieve_server(...)`
starts `mda serve` (through the e2e `start_server`) with extra `MDA_*` settings and the
users of `USERS`, each with their password.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import ServerProcess, start_server  # noqa: F401 (fixture)

Run = Callable[..., subprocess.CompletedProcess[bytes]]

ALICE, ALICE_PASSWORD = "alice@example.org", "alice's passwörd"
BOB, BOB_PASSWORD = "bob@example.org", "bob secret"
USERS = {ALICE: ALICE_PASSWORD, BOB: BOB_PASSWORD}

_FINAL = re.compile(rb"^(OK|NO|BYE)(?=$| )")
_LITERAL_END = re.compile(rb"\{(\d+)\+?\}$")
_QUOTED = re.compile(rb'^"((?:[^"\\]|\\.)*)"$', re.S)


@dataclass
class Response:
    """One server response.

    Attributes:
        raw: every byte received for it, the final line's CRLF included.
        lines: the lines before the final one, each without CRLF, literals inlined as
            `{N}\\r\\n<octets>`.
        status: OK, NO or BYE.
        code: the response code without parentheses (`QUOTA/MAXSIZE`, `TAG "x"`), or None.
        text: the human-readable text (quoted string unescaped, or literal octets), or None.
    """

    raw: bytes
    lines: list[bytes]
    status: str
    code: str | None
    text: str | None

    def __str__(self) -> str:
        return self.raw.decode("utf-8", "replace")


def _code_and_text(rest: bytes) -> tuple[str | None, str | None]:
    """Split what follows OK/NO/BYE into the response code and the text."""
    code = None
    if rest.startswith(b" ("):
        index, quoted = 2, False
        while rest[index:index + 1] != b")" or quoted:
            if rest[index:index + 1] == b"\\" and quoted:
                index += 1
            elif rest[index:index + 1] == b'"':
                quoted = not quoted
            index += 1
            assert index < len(rest), f"unterminated response code: {rest!r}"
        code = rest[2:index].decode("utf-8")
        rest = rest[index + 1:]
    if not rest:
        return code, None
    assert rest.startswith(b" "), rest
    literal_text = re.match(rb" \{(\d+)\}\r\n(.*)$", rest, re.S)
    if literal_text:
        return code, literal_text.group(2).decode("utf-8")
    return code, _unquote(rest[1:])


def _unquote(value: bytes) -> str:
    match = _QUOTED.match(value)
    assert match, f"not a quoted string: {value!r}"
    return re.sub(rb"\\(.)", rb"\1", match.group(1)).decode("utf-8")


class SieveWire:
    """A ManageSieve connection driven with raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, *,
                      tls: ssl.SSLContext | None = None) -> SieveWire:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname="localhost" if tls else None)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _line(self, timeout: float) -> bytes:
        line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)
        return line[:-2]

    async def response(self, timeout: float = 15) -> Response:
        """Read one complete response (up to and including OK/NO/BYE)."""
        raw = bytearray()
        lines: list[bytes] = []
        while True:
            line = await self._line(timeout)
            raw += line + b"\r\n"
            literal = _LITERAL_END.search(line)
            if literal:  # the line goes on after N octets
                data = await asyncio.wait_for(self.reader.readexactly(int(literal.group(1))),
                                              timeout)
                rest = await self._line(timeout)
                raw += data + rest + b"\r\n"
                line = line + b"\r\n" + data + rest
            match = _FINAL.match(line)
            if match:
                code, text = _code_and_text(line[match.end():])
                return Response(bytes(raw), lines, match.group(1).decode(), code, text)
            lines.append(line)

    async def command(self, data: bytes, timeout: float = 15) -> Response:
        """Send `data` (CRLF included by the caller) and read the response."""
        await self.send(data)
        return await self.response(timeout)

    async def greeting(self) -> Response:
        return await self.response()

    async def login(self, user: str, password: str) -> Response:
        """AUTHENTICATE PLAIN with an inline quoted initial response."""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return await self.command(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())

    async def eof(self, timeout: float = 10) -> bool:
        """True when the server closes the connection (after reading what is left)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), timeout)
        except (ConnectionError, ssl.SSLError):
            return True
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


def plain(user: str, password: str, authzid: str = "") -> str:
    """The base64 SASL PLAIN message (RFC 4616)."""
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def literal(data: bytes | str, plus: bool = True) -> bytes:
    """A client literal `{N+}\\r\\n<octets>` (or `{N}` with plus=False)."""
    octets = data.encode() if isinstance(data, str) else data
    return b"{%d%s}\r\n" % (len(octets), b"+" if plus else b"") + octets


def add_users(mda: Run) -> None:
    """Create the database and the users of USERS with their passwords."""
    mda("db", "upgrade", check=True)
    for address, password in USERS.items():
        mda("user", "add", address, "--password-stdin", input=password.encode() + b"\n",
            check=True)


@pytest.fixture
def sieve_server(start_server: Callable[..., ServerProcess],  # noqa: F811
                 mda: Run) -> Callable[..., ServerProcess]:
    """`sieve_server(**settings)`: `mda serve` with ALICE and BOB, ManageSieve on a free port.

    The failed-login delay defaults to 0 here so tests that fail a login stay quick.
    """
    created = False

    def start(**settings: str) -> ServerProcess:
        nonlocal created
        if not created:
            add_users(mda)
            created = True
        settings.setdefault("MDA_MANAGESIEVE_AUTH_FAILURE_DELAY", "0")
        return start_server(**settings)

    return start


@pytest.fixture
async def open_wire() -> AsyncIterator[Callable[..., Awaitable[SieveWire]]]:
    """`await open_wire(server, login=ALICE)`: a `SieveWire` after the greeting (and the
    login, when asked); closed at teardown."""
    opened: list[SieveWire] = []

    async def open_(server: ServerProcess, *, login: str | None = None) -> SieveWire:
        wire = await SieveWire.connect(server.managesieve_host, server.managesieve_port)
        opened.append(wire)
        greeting = await wire.greeting()
        assert greeting.status == "OK", greeting
        if login is not None:
            reply = await wire.login(login, USERS[login])
            assert reply.status == "OK", reply
        return wire

    yield open_
    for wire in opened:
        await wire.close()
