"""`mda serve` while PostgreSQL refuses new connections to its database (SQLSTATE 55000,
`ALTER DATABASE ... ALLOW_CONNECTIONS false`): LMTP answers 451 4.3.0 per recipient,
ManageSieve NO (TRYLATER), the CLI one error line, the log has warnings but no traceback;
all recover without a restart once connections are allowed again."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from sqlalchemy.engine import make_url

from tests.conftest import pg_admin, run_async
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_serve import deliver
from tests.lmtp import statuscodes as S
from tests.managesieve.conftest import SieveWire, plain

Run = Callable[..., subprocess.CompletedProcess[bytes]]


def _allow_connections(name: str, allow: bool) -> None:
    async def run() -> None:
        await pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            await pg_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")

    run_async(run())


async def test_database_not_accepting_connections_defers(
        mda: Run, mda_env: dict[str, str], start_server: Callable[..., ServerProcess],
        pg_url: str) -> None:
    env = dict(mda_env, MDA_DATABASE_URL=pg_url)
    mda("db", "upgrade", env=env, check=True)
    mda("user", "add", "bob@example.org", env=env, check=True)
    server = start_server(MDA_DATABASE_URL=pg_url)
    name = make_url(pg_url).database
    _allow_connections(name, False)
    try:
        result = await deliver(server, ["bob@example.org", "o1@example.org"])
        assert [r.status for r in result.rcpt] == [S.TEMP_FAILURE] * 2
        assert all("4.3.0" in r.text for r in result.rcpt), result.rcpt
        wire = await SieveWire.connect(server.managesieve_host, server.managesieve_port)
        try:
            await wire.greeting()
            answer = await wire.command(
                f'AUTHENTICATE "PLAIN" "{plain("bob@example.org", "pw")}"\r\n'.encode())
            assert (answer.status, answer.code) == ("NO", "TRYLATER"), answer
        finally:
            await wire.close()
        proc = mda("user", "list", env=env)
        assert proc.returncode != 0
        where = make_url(pg_url)
        assert proc.stderr.decode().splitlines() == [
            f'mda: error: database unavailable: database "{name}" is not currently accepting '
            f"connections ({where.host}:{where.port or 5432}/{name})"]
    finally:
        _allow_connections(name, True)
    again = await deliver(server, ["bob@example.org"])
    assert [r.status for r in again.after_data] == [S.DELIVERED]
    assert server.stop() == 0
    log = server.log_text()
    assert "not currently accepting connections" in log
    assert "Traceback" not in log and " ERROR " not in log, log
