"""`mda serve --workers N` (a pre-fork parent owning the listeners) and separate `mda serve`
processes on one database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import MDA_BIN
from tests.e2e.conftest import ServerProcess, _read_stderr
from tests.lmtp import statuscodes as S
from tests.lmtp.client import LMTPClient
from tests.scale.conftest import (WORKER_LISTENING, Cli, Launch, alive, parent_pid,
                                  wait_started, worker_pids)

USER = "bob@example.org"


def message(n: int) -> bytes:
    return (f"From: a@example.net\r\nSubject: n{n}\r\nMessage-ID: <{n}@workers.test>\r\n\r\n"
            f"body {n}\r\n").encode()


async def deliver(server: ServerProcess, n: int, rcpts: tuple[str, ...] = (USER,)
                  ) -> list[str]:
    """One transaction on a new connection; the statuses after DATA."""
    client = await server.client()
    try:
        result = await client.transaction("a@example.net", list(rcpts), message(n))
    finally:
        await client.quit()
    return [reply.status for reply in result.after_data]


def stored_subjects(cli: Cli, user: str = USER) -> list[str]:
    listing = json.loads(cli("message", "list", user, "--json").stdout)
    return sorted(item["subject"] for item in listing)


def delivering_pids(server: ServerProcess, count: int = 0) -> list[int]:
    """The pid of each `result=stored` log line, in order; waits up to 10 s for `count` of
    them (a reply can reach the client before its log line reaches the test)."""
    deadline = time.monotonic() + 10
    while True:
        pids = [int(line.split("mda.lmtp[", 1)[1].split("]", 1)[0])
                for line in list(server.log) if "result=stored" in line and "mda.lmtp[" in line]
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        time.sleep(0.02)


async def test_workers_serve_one_listener_and_stop_together(cli: Cli, launch: Launch,
                                                            tmp_path: Path) -> None:
    cli("db", "upgrade")
    cli("user", "add", USER)
    managesieve = tmp_path / "sieve.sock"
    server = launch("--workers", "2", MDA_HTTP_LISTEN="127.0.0.1:0",
                    MDA_MANAGESIEVE_LISTEN=f"unix:{managesieve}")
    workers = worker_pids(server, 2)
    assert len(set(workers)) == 2 and server.proc.pid not in workers
    assert all(parent_pid(pid) == server.proc.pid for pid in workers)
    # Migrations ran once, in the parent, before any worker existed.
    migration_pids = {line.split("[", 1)[1].split("]", 1)[0] for line in server.log
                      if "alembic" in line}
    assert migration_pids <= {str(server.proc.pid)}
    server.wait_for_log(r"listening for ManageSieve on unix:")
    assert len(set(server.where for _ in workers)) == 1

    for n in range(30):  # one connection each: the kernel hands each to a free worker
        assert await deliver(server, n) == [S.DELIVERED]
    served = delivering_pids(server, 30)
    assert len(served) == 30 and set(served) <= set(workers)
    print(f"\nconnections per worker: { {pid: served.count(pid) for pid in workers} }")

    assert server.stop() == 0
    assert not managesieve.exists()  # the parent removed the socket file it created
    server.wait_for_log(r"pre-fork parent: all workers stopped")
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists()
    assert stored_subjects(cli) == sorted(f"n{n}" for n in range(30))


async def test_held_connections_spread_over_the_workers(cli: Cli, launch: Launch) -> None:
    """A busy worker lets an idle one accept first (mda.server.SharedAcceptor): of 8
    connections opened one after another and kept open, each worker gets some."""
    cli("db", "upgrade")
    cli("user", "add", USER)
    server = launch("--workers", "2")
    workers = worker_pids(server, 2)
    clients = []
    for n in range(8):
        client = await server.client()
        clients.append(client)
        result = await client.transaction("a@example.net", [USER], message(n))
        assert [r.status for r in result.after_data] == [S.DELIVERED]
    served = delivering_pids(server, 8)
    for client in clients:
        await client.quit()
    print(f"\nheld connections per worker: { {pid: served.count(pid) for pid in workers} }")
    assert len(served) == 8 and set(served) == set(workers)
    assert server.stop() == 0


async def test_sighup_to_the_parent_or_a_worker_is_ignored(cli: Cli, launch: Launch) -> None:
    cli("db", "upgrade")
    cli("user", "add", USER)
    server = launch("--workers", "2")
    workers = worker_pids(server, 2)
    os.kill(server.proc.pid, signal.SIGHUP)
    os.kill(workers[0], signal.SIGHUP)
    deadline = time.monotonic() + 10  # a loaded machine may take a while to log it
    while server.log_text().count("SIGHUP ignored") < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # and no third line
    assert server.log_text().count("SIGHUP ignored") == 2, server.log_text()
    assert server.proc.poll() is None and all(alive(pid) for pid in workers)
    listening = [line for line in list(server.log) if WORKER_LISTENING.search(line)]
    assert len(listening) == 2  # no worker was replaced
    for n in range(4):
        assert await deliver(server, n) == [S.DELIVERED]
    assert server.stop() == 0


async def test_a_worker_that_dies_is_replaced_and_nothing_queued_is_lost(
        cli: Cli, launch: Launch, tmp_path: Path) -> None:
    cli("db", "upgrade")
    cli("user", "add", USER)
    socket_path = tmp_path / "lmtp.sock"
    server = launch("--workers", "2", "--listen", f"unix:{socket_path}")
    first, second = worker_pids(server, 2)
    # Connections waiting in the shared accept queue while a worker dies are served.
    pending = [asyncio.create_task(LMTPClient.connect(path=socket_path)) for _ in range(4)]
    os.kill(first, signal.SIGKILL)
    clients = await asyncio.gather(*pending)
    for n, client in enumerate(clients):
        assert (await client.lhlo("mta.test")).code == 250
        result = await client.transaction("a@example.net", [USER], message(n))
        assert [r.status for r in result.after_data] == [S.DELIVERED]
        await client.quit()
    server.wait_for_log(rf"worker {first} exited with signal SIGKILL .*starting another")
    replacement = worker_pids(server, 3)[2]
    assert replacement not in (first, second)
    assert parent_pid(replacement) == server.proc.pid
    assert await deliver(server, 10) == [S.DELIVERED]
    assert server.stop() == 0
    assert not socket_path.exists()
    assert stored_subjects(cli) == sorted([*(f"n{n}" for n in range(4)), "n10"])


async def test_workers_setting_from_the_environment_and_sigint(cli: Cli,
                                                               launch: Launch) -> None:
    cli("db", "upgrade")
    cli("user", "add", USER)
    server = launch(MDA_WORKERS="3")
    workers = worker_pids(server, 3)
    assert await deliver(server, 1) == [S.DELIVERED]
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(30) == 0
    server.wait_for_log(r"pre-fork parent: SIGINT: stopping 3 workers")
    for pid in workers:
        server.wait_for_log(rf"pre-fork parent: worker {pid} stopped")


def keep_signalling(pids: list[int], signum: int, every: float = 0.002,
                    timeout: float = 60) -> None:
    """Send `signum` to each of `pids` every `every` seconds until none is alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [pid for pid in pids if alive(pid)]
        if not running:
            return
        for pid in running:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        time.sleep(every)
    raise AssertionError(f"workers {pids} still running after {timeout} s")


async def test_sigterm_to_the_whole_process_group_stops_every_worker_cleanly(
        cli: Cli, instance_env: dict[str, str], tmp_path: Path) -> None:
    """What systemd's KillMode=control-group, Ctrl-C in a terminal and `timeout` do: the
    parent and every worker get SIGTERM at once, then each worker gets the parent's
    forwarded SIGTERM too, possibly late in its shutdown. A worker already stopping ignores
    it, and the parent logs every worker as stopped cleanly."""
    cli("db", "upgrade")
    cli("user", "add", USER)
    proc = subprocess.Popen([MDA_BIN, "serve", "--workers", "2"], env=instance_env,
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    server = ServerProcess(proc)
    threading.Thread(target=_read_stderr, args=(server,), daemon=True).start()
    try:
        wait_started(server)
        workers = worker_pids(server, 2)
        for n in range(4):  # pooled database connections for the workers to close
            assert await deliver(server, n) == [S.DELIVERED]
        os.killpg(proc.pid, signal.SIGTERM)
        # The forwarded SIGTERM comes whenever the parent gets to it: here it comes again
        # and again, at every stage of the workers' shutdown, until they are gone.
        await asyncio.to_thread(keep_signalling, workers, signal.SIGTERM)
        status = await asyncio.to_thread(proc.wait, 60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    server.wait_for_log(r"pre-fork parent: all workers stopped")
    errors = [line for line in list(server.log) if " ERROR " in line or "Traceback" in line]
    assert status == 0 and not errors, server.log_text()
    for pid in workers:
        server.wait_for_log(rf"pre-fork parent: worker {pid} stopped$")


async def test_workers_stop_gracefully_when_the_parent_is_killed(cli: Cli,
                                                                 launch: Launch) -> None:
    cli("db", "upgrade")
    cli("user", "add", USER)
    server = launch("--workers", "2")
    workers = worker_pids(server, 2)
    server.proc.kill()
    server.proc.wait(10)
    for pid in workers:  # SIGTERM from the kernel (PR_SET_PDEATHSIG): a graceful stop
        await asyncio.to_thread(server.wait_for_log, rf"mda\.server\[{pid}\]: stopped", 30)
    deadline = asyncio.get_running_loop().time() + 10
    while any(alive(pid) for pid in workers):
        assert asyncio.get_running_loop().time() < deadline, "a worker outlived its parent"
        await asyncio.sleep(0.05)


def test_bad_worker_counts_are_refused(mda_env: dict[str, str]) -> None:
    for args, env, expected in [
            (["--workers", "0"], {}, "Invalid value for '--workers'"),
            ([], {"MDA_WORKERS": "many"}, "invalid setting MDA_WORKERS"),
            ([], {"MDA_WORKERS": "0"}, "invalid setting MDA_WORKERS")]:
        proc = subprocess.run([MDA_BIN, "serve", *args], env={**mda_env, **env},
                              capture_output=True, timeout=60)
        assert proc.returncode != 0
        assert expected in proc.stderr.decode(), proc.stderr


async def test_two_instances_start_together_on_an_empty_database(cli: Cli,
                                                                 launch: Launch) -> None:
    # Both migrate at start: the migration lock lets one apply the revisions and the other
    # find them applied.
    servers = [launch(wait=False), launch(wait=False)]
    for server in servers:
        wait_started(server)
    assert servers[0].port != servers[1].port
    cli("user", "add", USER)
    for n, server in enumerate(servers):
        assert await deliver(server, n) == [S.DELIVERED]
    assert stored_subjects(cli) == ["n0", "n1"]
