"""The `/healthz` and `/metrics` listener (`mda.http`): the HTTP it speaks, byte for byte, on
a real socket in front of a real SQLite file; and `mda serve` starting, refusing and
stopping it (`MDA_HTTP_LISTEN`).

The topology run (PostgreSQL, LMTP, ManageSieve, the counters moving, `/healthz` following
the database) is `tests/docker/test_topology.py`.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from mda.http import MAX_REQUEST_HEAD, HttpServer
from mda.store import Store
from mda.store.migrate import upgrade
from tests.conftest import MDA_BIN
from tests.e2e.conftest import launch_server, stop_servers

MDA_FAMILIES = {"mda_deliveries", "mda_lmtp_replies", "mda_delivery_duration_seconds",
                "mda_sieve_errors", "mda_quota_rejections", "mda_managesieve_logins"}
HTTP_LINE = re.compile(r"listening for HTTP on (\S+):(\d+) \(/healthz, /metrics\)")


@dataclass
class Response:
    """One parsed HTTP/1.1 response, as the bytes on the wire said it."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


def parse_response(raw: bytes) -> Response:
    """Split a response into status, headers (names lower-cased) and body; the body must be
    exactly Content-Length bytes."""
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, f"no end of head in {raw!r}"
    status_line, *lines = head.decode("ascii").split("\r\n")
    version, status, reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1", status_line
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(status), reason, headers, body)


async def exchange(port: int, request: bytes, *, timeout: float = 10) -> bytes:
    """Send `request` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: mda.test\r\n{extra}\r\n".encode()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
async def http_port(migrated_url: str) -> AsyncIterator[int]:
    """An `HttpServer` on a free loopback port in front of a migrated database."""
    async with Store(migrated_url) as store:
        server = HttpServer(store, request_timeout=0.5)
        _, port = await server.listen(host="127.0.0.1", port=0)
        try:
            yield port
        finally:
            await server.close()


async def test_healthz_is_200_ok_with_length_and_close(http_port: int) -> None:
    response = parse_response(await exchange(http_port, get("/healthz")))
    assert (response.status, response.reason, response.body) == (200, "OK", b"ok\n")
    assert response.headers["content-length"] == "3"
    assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["date"].endswith(" GMT")


async def test_head_sends_the_length_but_no_body(http_port: int) -> None:
    response = parse_response(await exchange(http_port, get("/healthz", "HEAD")))
    assert (response.status, response.body) == (200, b"")
    assert response.headers["content-length"] == "3"


async def test_metrics_are_prometheus_text_with_every_mda_family(http_port: int) -> None:
    response = parse_response(await exchange(http_port, get("/metrics")))
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert int(response.headers["content-length"]) == len(response.body)
    families = {family.name: family for family in
                text_string_to_metric_families(response.body.decode())}
    assert MDA_FAMILIES <= set(families)
    assert "process_resident_memory_bytes" in families
    stored = [sample for sample in families["mda_deliveries"].samples
              if sample.labels == {"result": "stored", "stage": "data"}]
    assert len(stored) == 1, "every result has its series from the start"


@pytest.mark.parametrize("target", ["/healthz?verbose=1", "http://mda.test/healthz"])
async def test_query_string_and_absolute_form_reach_the_resource(http_port: int,
                                                                 target: str) -> None:
    """RFC 9112 §3.2.2: a server MUST accept the absolute form of the request target."""
    response = parse_response(await exchange(http_port, get(target)))
    assert (response.status, response.body) == (200, b"ok\n")


async def test_unknown_path_is_404(http_port: int) -> None:
    response = parse_response(await exchange(http_port, get("/admin")))
    assert response.status == 404
    assert response.body == b"not found: /admin (try /healthz or /metrics)\n"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
async def test_other_methods_are_405_with_allow(http_port: int, method: str) -> None:
    response = parse_response(await exchange(
        http_port, get("/metrics", method, "Content-Length: 0\r\n")))
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert response.body == f"method {method} not allowed\n".encode()


@pytest.mark.parametrize("request_bytes", [
    b"HELLO\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host (RFC 9112 §3.2: MUST respond 400)
    b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\nHost: a\n\x00\n\n",
], ids=["not-http", "no-host", "two-hosts", "space-in-name", "nul"])
async def test_malformed_requests_get_400_and_a_reason(http_port: int,
                                                      request_bytes: bytes) -> None:
    response = parse_response(await exchange(http_port, request_bytes))
    assert response.status == 400
    assert response.body.startswith(b"bad request: ")
    assert response.body.count(b"\n") == 1


@pytest.mark.parametrize("size, status", [(MAX_REQUEST_HEAD, 200), (MAX_REQUEST_HEAD + 1, 431)])
async def test_a_request_head_over_the_limit_gets_431(http_port: int, size: int,
                                                     status: int) -> None:
    """RFC 6585 §5: 431 when the header fields are too large; the limit itself passes."""
    bare = get("/healthz", extra="X-Pad: \r\n")
    request = get("/healthz", extra="X-Pad: " + "a" * (size - len(bare)) + "\r\n")
    assert len(request) == size
    assert parse_response(await exchange(http_port, request)).status == status


async def test_a_client_that_never_finishes_its_head_gets_408(http_port: int) -> None:
    started = time.monotonic()
    raw = await exchange(http_port, b"GET /healthz HTTP/1.1\r\nHost: mda.test\r\n")
    assert parse_response(raw).status == 408
    assert time.monotonic() - started < 3


async def test_a_client_that_closes_at_once_gets_nothing(http_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    # and the listener still answers the next one
    assert parse_response(await exchange(http_port, get("/healthz"))).status == 200


async def test_healthz_is_503_with_one_line_when_the_database_is_missing(
        missing_database_url: str) -> None:
    async with Store(missing_database_url) as store:
        server = HttpServer(store)
        _, port = await server.listen(host="127.0.0.1", port=0)
        try:
            response = parse_response(await exchange(port, get("/healthz")))
        finally:
            await server.close()
    assert response.status == 503
    assert response.reason == "Service Unavailable"
    name = Path(make_url(missing_database_url).database or "").name
    assert re.search(rb"\b%s\b.* does not exist" % re.escape(name.encode()), response.body), \
        response.body
    assert response.body.count(b"\n") == 1


async def test_healthz_is_503_when_the_database_does_not_answer_in_time() -> None:
    """A server that accepts the connection and then says nothing (a hung PostgreSQL)."""
    silent_peers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_peers.append(writer)

    silent_server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = silent_server.sockets[0].getsockname()[1]
    async with Store(f"postgresql+asyncpg://mda@127.0.0.1:{port}/mda") as store:
        server = HttpServer(store, health_timeout=0.3)
        _, http = await server.listen(host="127.0.0.1", port=0)
        try:
            started = time.monotonic()
            response = parse_response(await exchange(http, get("/healthz")))
            elapsed = time.monotonic() - started
        finally:
            await server.close()
            for writer in silent_peers:
                writer.close()
            silent_server.close()
    assert response.status == 503
    assert response.body == b"database did not answer within 0.3 s\n"
    assert elapsed < 2


async def test_close_ends_idle_connections_at_once(migrated_url: str) -> None:
    async with Store(migrated_url) as store:
        server = HttpServer(store)  # the default 10 s request timeout
        _, port = await server.listen(host="127.0.0.1", port=0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 1
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()


# ---------------------------------------------------------------- mda serve


def test_serve_starts_http_on_mda_http_listen_and_stops_it(mda_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    server = launch_server({**mda_env, "MDA_HTTP_LISTEN": "127.0.0.1:0"}, tmp_path)
    try:
        line = server.wait_for_log(HTTP_LINE.pattern)
        host, port = HTTP_LINE.search(line).groups()  # type: ignore[union-attr]
        lines = server.log_text()
        assert lines.index("listening for HTTP") < lines.index("listening for LMTP"), \
            "the LMTP line stays the last start-up line"
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as answer:
            assert (answer.status, answer.read()) == (200, b"ok\n")
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
            assert b"mda_deliveries_total" in answer.read()
    finally:
        stop_servers([server])
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()


async def test_one_process_keeps_its_metrics_in_memory_whatever_the_environment_says(
        mda_env: dict[str, str], tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR matters only to `--workers` (tests/scale/
    test_metrics_workers.py): one process writes no file there and answers with its own
    counters and process metrics."""
    chosen = tmp_path / "metrics"
    chosen.mkdir()
    server = launch_server({**mda_env, "MDA_HTTP_LISTEN": "127.0.0.1:0",
                            "PROMETHEUS_MULTIPROC_DIR": str(chosen)}, tmp_path)
    try:
        host, port = HTTP_LINE.search(  # type: ignore[union-attr]
            server.wait_for_log(HTTP_LINE.pattern)).groups()
        client = await server.client()
        await client.quit()
        response = parse_response(await exchange(int(port), get("/metrics")))
    finally:
        stop_servers([server])
    families = {family.name: family for family in
                text_string_to_metric_families(response.body.decode())}
    replies = {sample.labels["code"]: sample.value
               for sample in families["mda_lmtp_replies"].samples}
    assert (replies["220"], replies["250"], replies["221"]) == (1, 1, 1)
    assert [sample.labels for sample in families["process_resident_memory_bytes"].samples] \
        == [{}]
    assert "mda_worker_info" not in families
    assert list(chosen.iterdir()) == []


def test_http_is_off_unless_configured(mda_env: dict[str, str], tmp_path: Path) -> None:
    server = launch_server(mda_env, tmp_path)
    stop_servers([server])
    assert "listening for HTTP" not in server.log_text()


def test_a_bad_mda_http_listen_is_a_one_line_error(mda_env: dict[str, str]) -> None:
    proc = subprocess.run([MDA_BIN, "serve"], capture_output=True, timeout=60, env={
        **mda_env, "MDA_LMTP_LISTEN": "127.0.0.1:0", "MDA_MANAGESIEVE_LISTEN": "",
        "MDA_HTTP_LISTEN": "8080"})
    assert proc.returncode != 0
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("mda: error: MDA_HTTP_LISTEN: listen address '8080'"), last


def test_a_busy_http_port_is_a_one_line_error(mda_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([MDA_BIN, "serve"], capture_output=True, timeout=60, env={
            **mda_env, "MDA_LMTP_LISTEN": "127.0.0.1:0", "MDA_MANAGESIEVE_LISTEN": "127.0.0.1:0",
            "MDA_HTTP_LISTEN": f"127.0.0.1:{port}"})
    assert proc.returncode != 0
    stderr = proc.stderr.decode()
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"mda: error: cannot listen for HTTP on 127.0.0.1:{port}: "), last
    assert "Traceback" not in stderr
