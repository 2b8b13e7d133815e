"""The compose topology without containers: `mda serve` on PostgreSQL with the settings
`docker-compose.yml` gives the `mda` service (LMTP, ManageSieve and HTTP listening), driven
by a real LMTP client and a ManageSieve login; `/metrics` must count exactly what happened,
and `/healthz` must follow the database: 503 once it is dropped, 200 once it is back.
"""

from __future__ import annotations

import asyncio
import base64
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.conftest import pg_admin
from tests.e2e.conftest import ServerProcess, launch_server, stop_servers
from tests.lmtp.client import LMTPClient
from tests.lmtp.statuscodes import DELIVERED, OVER_QUOTA, RCPT_OK, UNKNOWN_USER

HTTP_LINE = re.compile(r"listening for HTTP on (\S+) \(/healthz, /metrics\)")
MESSAGE = (b"From: sender@example.net\r\nTo: alice@example.org\r\nSubject: compose test\r\n"
           b"Message-ID: <topology@example.net>\r\n\r\n" + b"body line\r\n" * 20)

Run = Callable[..., CompletedProcess[bytes]]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str) -> Samples:
    """Every sample of `/metrics`, keyed by (sample name, sorted labels)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def healthz(base: str) -> tuple[int, bytes]:
    """(status, body) of `/healthz`."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def deliver(server: ServerProcess) -> list[str]:
    """One LMTP session: a stored copy, an over-quota one, a kept one whose script fails
    (redirect without a submission URL), and an unknown recipient refused at RCPT."""
    client = await server.client()
    result = await client.transaction(
        "sender@example.net",
        ["alice@example.org", "bob@example.org", "carol@example.org", "nobody@example.org"],
        MESSAGE)
    await client.quit()
    return [r.status for r in result.rcpt] + [r.status for r in result.after_data]


async def managesieve_logins(server: ServerProcess) -> list[bytes]:
    """A good and a bad AUTHENTICATE PLAIN; returns the two final lines."""
    reader, writer = await asyncio.open_connection(server.managesieve_host,
                                                   server.managesieve_port)

    async def response() -> bytes:
        while True:
            line = await asyncio.wait_for(reader.readline(), 10)
            if line.startswith((b"OK", b"NO", b"BYE")) or not line:
                return line.strip()

    async def authenticate(password: str) -> bytes:
        token = base64.b64encode(f"\0alice@example.org\0{password}".encode()).decode()
        writer.write(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())
        return await response()

    await response()  # the greeting
    answers = [await authenticate("wrong"), await authenticate("secret")]
    writer.write(b"LOGOUT\r\n")
    writer.close()
    return answers


@pytest.mark.postgresql_only
def test_compose_topology_on_postgresql(mda: Run, mda_env: dict[str, str], database_url: str,
                                        tmp_path: Path) -> None:
    env = {**mda_env, "MDA_HTTP_LISTEN": "127.0.0.1:0",
           "MDA_MANAGESIEVE_AUTH_FAILURE_DELAY": "0"}
    run = mda
    run("db", "upgrade", env=env, check=True)
    run("user", "add", "alice@example.org", "--password-stdin", input=b"secret\n", env=env,
        check=True)
    run("user", "add", "bob@example.org", "--quota-storage", "100", env=env,
        check=True)
    run("user", "add", "carol@example.org", env=env, check=True)
    (tmp_path / "fwd.sieve").write_text('redirect "elsewhere@example.net";\n')
    run("sieve", "put", "carol@example.org", "fwd", str(tmp_path / "fwd.sieve"), "--activate",
        env=env, check=True)

    server = launch_server(env, tmp_path)
    try:
        base = "http://" + HTTP_LINE.search(server.wait_for_log(HTTP_LINE.pattern)).group(1)  # type: ignore[union-attr]
        assert healthz(base) == (200, b"ok\n")
        before = scrape(base)

        statuses = asyncio.run(deliver(server))
        assert statuses == [RCPT_OK, RCPT_OK, RCPT_OK, UNKNOWN_USER,
                            DELIVERED, OVER_QUOTA, DELIVERED]
        logins = asyncio.run(managesieve_logins(server))
        assert logins[0].startswith(b"NO") and logins[1].startswith(b"OK"), logins
        after = scrape(base)

        counts = {
            "stored": delta(before, after, "mda_deliveries_total", result="stored", stage="data"),
            "over_quota": delta(before, after, "mda_deliveries_total", result="over_quota",
                                stage="data"),
            "unknown": delta(before, after, "mda_deliveries_total", result="unknown_user",
                             stage="rcpt"),
            "quota": delta(before, after, "mda_quota_rejections_total", stage="data"),
            "sieve": delta(before, after, "mda_sieve_errors_total", kind="runtime"),
            "latency": delta(before, after, "mda_delivery_duration_seconds_count"),
            "login_ok": delta(before, after, "mda_managesieve_logins_total", result="ok"),
            "login_failed": delta(before, after, "mda_managesieve_logins_total",
                                  result="failed"),
        }
        assert counts == {"stored": 2, "over_quota": 1, "unknown": 1, "quota": 1, "sieve": 1,
                          "latency": 1, "login_ok": 1, "login_failed": 1}
        # 220 greeting; 250 LHLO, MAIL, 3 RCPT, 2 after DATA; 550 RCPT; 354 DATA; 552 after
        # DATA; 221 QUIT.
        replies = {code: delta(before, after, "mda_lmtp_replies_total", code=code)
                   for code in ("220", "250", "550", "354", "552", "221")}
        assert replies == {"220": 1, "250": 7, "550": 1, "354": 1, "552": 1, "221": 1}

        name = make_url(database_url).database
        asyncio.run(pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))
        status, body = healthz(base)
        assert status == 503, body
        assert body.count(b"\n") == 1 and name.encode() in body, body
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
        assert healthz(base) == (200, b"ok\n")
        assert server.wait_for_log("health check failing")
        assert server.wait_for_log("health check passing again")
    finally:
        stop_servers([server])
