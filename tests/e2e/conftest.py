"""A real `mda serve` subprocess on a free port (or a unix socket) with a temp SQLite file.

`start_server(**settings)` starts one with extra `MDA_*` settings, waits for its startup
line (`listening for LMTP on HOST:PORT`) and returns a `ServerProcess`. ManageSieve listens
on 127.0.0.1 on a port the system picks (`MDA_MANAGESIEVE_LISTEN=127.0.0.1:0`, so parallel
runs never collide on 4190); its startup lines (`listening for ManageSieve on HOST:PORT`,
`listening for ManageSieve over TLS on HOST:PORT`), logged before the LMTP one, fill
`ServerProcess.managesieve_where` and `managesieve_tls_where`. At teardown every server still
running gets SIGTERM and must exit 0 within its shutdown timeout.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import MDA_BIN
from tests.lmtp.client import LMTPClient

_LISTENING = re.compile(r"listening for LMTP on (\S+)")
_MANAGESIEVE = re.compile(r"listening for ManageSieve on (\S+)")
_MANAGESIEVE_TLS = re.compile(r"listening for ManageSieve over TLS on (\S+)")


def _host(where: str) -> str:
    """The host of `host:port` or `[v6]:port`, without brackets."""
    return where.rsplit(":", 1)[0].strip("[]")


def _port(where: str) -> int:
    """The port of `host:port` or `[v6]:port`."""
    return int(where.rsplit(":", 1)[1])


@dataclass
class ServerProcess:
    """A running `mda serve`.

    Attributes:
        proc: the process.
        where: the bound LMTP address as logged: `host:port` or `unix:/path`.
        managesieve_where: the bound ManageSieve address (`host:port`), "" when disabled.
        managesieve_tls_where: the implicit-TLS ManageSieve address, "" when disabled.
        log: stderr lines so far (filled by a reader thread).
    """

    proc: subprocess.Popen[bytes]
    where: str = ""
    managesieve_where: str = ""
    managesieve_tls_where: str = ""
    log: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)

    @property
    def host(self) -> str:
        return _host(self.where)

    @property
    def port(self) -> int:
        return _port(self.where)

    @property
    def managesieve_host(self) -> str:
        """Host of the plain ManageSieve listener (AssertionError when it is disabled)."""
        assert self.managesieve_where, "ManageSieve is not listening"
        return _host(self.managesieve_where)

    @property
    def managesieve_port(self) -> int:
        """Port of the plain ManageSieve listener (AssertionError when it is disabled)."""
        assert self.managesieve_where, "ManageSieve is not listening"
        return _port(self.managesieve_where)

    @property
    def managesieve_tls_port(self) -> int:
        """Port of the implicit-TLS ManageSieve listener (AssertionError when disabled)."""
        assert self.managesieve_tls_where, "ManageSieve over TLS is not listening"
        return _port(self.managesieve_tls_where)

    async def client(self, lhlo: bool = True) -> LMTPClient:
        """A connected LMTP client (after LHLO unless `lhlo=False`)."""
        if self.where.startswith("unix:"):
            client = await LMTPClient.connect(path=self.where[len("unix:"):])
        else:
            client = await LMTPClient.connect(self.host, self.port)
        if lhlo:
            reply = await client.lhlo("mta.test")
            assert reply.code == 250, reply
        return client

    def log_text(self) -> str:
        return "\n".join(self.log)

    def wait_for_log(self, pattern: str, timeout: float = 10) -> str:
        """Wait until a stderr line matches `pattern` (regex); return that line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.log):
                if regex.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log_text()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def _read_stderr(server: ServerProcess) -> None:
    assert server.proc.stderr is not None
    for raw in server.proc.stderr:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        server.log.append(line)
        if match := _MANAGESIEVE.search(line):
            server.managesieve_where = match.group(1)
        if match := _MANAGESIEVE_TLS.search(line):
            server.managesieve_tls_where = match.group(1)
        match = _LISTENING.search(line)
        if match and not server._ready.is_set():
            server.where = match.group(1)
            server._ready.set()
    server._ready.set()


@pytest.fixture
def start_server(mda_env: dict[str, str], tmp_path: Path
                 ) -> Iterator[Callable[..., ServerProcess]]:
    """Start `mda serve` with extra settings, e.g. `start_server(MDA_QUOTA_FULL_TEMPFAIL="true")`.

    The LMTP and ManageSieve listeners default to 127.0.0.1 on ports the system picks (pass
    `MDA_MANAGESIEVE_LISTEN=""` to disable ManageSieve); the working directory is the test's
    temp dir.
    """
    servers: list[ServerProcess] = []

    def start(**settings: str) -> ServerProcess:
        server = launch_server({**mda_env, **settings}, tmp_path)
        servers.append(server)
        return server

    yield start
    stop_servers(servers)


def launch_server(env: dict[str, str], cwd: Path) -> ServerProcess:
    """Start `mda serve` with this environment and wait for its LMTP startup line.

    LMTP and ManageSieve listen on 127.0.0.1 on ports the system picks unless `env` says
    otherwise (`MDA_MANAGESIEVE_LISTEN=""` disables ManageSieve); `MDA_HOSTNAME` defaults to
    `mx.test`.

    Raises:
        AssertionError: the server did not start within 60 s (the log is in the message).
    """
    env = dict(env)
    env.setdefault("MDA_HOSTNAME", "mx.test")
    env.setdefault("MDA_LMTP_LISTEN", "127.0.0.1:0")
    env.setdefault("MDA_MANAGESIEVE_LISTEN", "127.0.0.1:0")
    proc = subprocess.Popen([MDA_BIN, "serve"], env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    server = ServerProcess(proc)
    threading.Thread(target=_read_stderr, args=(server,), daemon=True).start()
    if not server._ready.wait(60) or not server.where:
        proc.kill()
        raise AssertionError(f"mda serve did not start; log:\n{server.log_text()}")
    return server


def stop_servers(servers: list[ServerProcess]) -> None:
    """SIGTERM every server still running; each must exit 0."""
    for server in servers:
        if server.proc.poll() is None:
            status = server.stop()
            assert status == 0, f"mda serve exited {status}; log:\n{server.log_text()}"


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    """Write a file in the temp dir and return its path as text."""
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)

