"""Several `mda serve` processes (or workers) on one database: fixtures and helpers.

- `db_url`: parametrized over a fresh SQLite file and a fresh PostgreSQL database
  (`pg_url`), ids `sqlite` and `postgresql`.
- `instance_env`: the environment for real `mda` processes on that database.
- `cli`: run `mda ARGS` on that database (exit status 0 asserted).
- `launch`: start `mda serve [ARGS]` with extra settings; every process still running at
  teardown gets SIGTERM and must exit 0, and no worker it started may outlive it.
- `worker_pids(server, n)`: wait until n workers say they listen; their pids.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MDA_BIN
from tests.e2e.conftest import ServerProcess, _read_stderr, stop_servers

Launch = Callable[..., ServerProcess]
Cli = Callable[..., subprocess.CompletedProcess[bytes]]

WORKER_LISTENING = re.compile(r"mda\.server\[(\d+)\]: listening for LMTP on ")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """A fresh, empty database: a SQLite file or a PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url
    return request.getfixturevalue("pg_url")


@pytest.fixture
def instance_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for `mda` processes on `db_url`, without inherited MDA_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDA_")}
    env.update(MDA_DATABASE_URL=db_url, MDA_SIEVE_SCRIPTS_DIR=str(tmp_path / "sieve_scripts"),
               MDA_HOSTNAME="mx.test", MDA_LMTP_LISTEN="127.0.0.1:0",
               MDA_MANAGESIEVE_LISTEN="")
    return env


@pytest.fixture
def cli(instance_env: dict[str, str]) -> Cli:
    """Run `mda ARGS` on the test database; asserts exit status 0."""

    def run(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([MDA_BIN, *args], input=input, capture_output=True,
                              env=instance_env, timeout=120)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    return run


@pytest.fixture
def launch(instance_env: dict[str, str], tmp_path: Path) -> Iterator[Launch]:
    """Start `mda serve *args` with extra settings: `launch("--workers", "2", MDA_X="y")`.

    Returns once its first "listening for LMTP" line is logged (with `wait=False` at once:
    call `wait_started` later).
    """
    servers: list[ServerProcess] = []

    def start(*args: str, wait: bool = True, **settings: str) -> ServerProcess:
        proc = subprocess.Popen([MDA_BIN, "serve", *args], env={**instance_env, **settings},
                                cwd=tmp_path, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = ServerProcess(proc)
        servers.append(server)
        threading.Thread(target=_read_stderr, args=(server,), daemon=True).start()
        if wait:
            wait_started(server)
        return server

    yield start
    children = {pid for server in servers for pid in _children(server.proc.pid)}
    stop_servers(servers)
    assert not [pid for pid in children if alive(pid)], "workers outlived their parent"


def wait_started(server: ServerProcess) -> None:
    """Wait for the first "listening for LMTP" line.

    Raises:
        AssertionError: not within 60 s, or the process ended first (the log is shown).
    """
    if not server._ready.wait(60) or not server.where:
        server.proc.kill()
        raise AssertionError(f"mda serve did not start; log:\n{server.log_text()}")


def worker_pids(server: ServerProcess, count: int, timeout: float = 30) -> list[int]:
    """The pids of the first `count` workers that logged "listening for LMTP", in order.

    Raises:
        AssertionError: fewer within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(m.group(1)) for line in list(server.log)
                if (m := WORKER_LISTENING.search(line))]
        if len(pids) >= count:
            return pids[:count]
        time.sleep(0.05)
    raise AssertionError(f"{count} workers did not start; log:\n{server.log_text()}")


def _children(pid: int) -> list[int]:
    """The pids of a process's children (from /proc)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_pid(pid: int) -> int:
    """The parent pid of a process (from /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
