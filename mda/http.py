"""The HTTP listener for health checks and metrics (`MDA_HTTP_LISTEN`).

Two resources, read with GET (or HEAD):

| path | answer |
| --- | --- |
| `/healthz` | `200` `ok` when the database answered `SELECT 1` within `HEALTH_TIMEOUT` seconds; `503` and one line giving the reason otherwise (`mda.store.health`) |
| `/metrics` | `200`, every metric of `mda.metrics.registry()` in the Prometheus text format (version 0.0.4); with `--workers`, the sum over every worker whichever one answers |

Any other path is `404`, any other method on those paths `405` with `Allow: GET, HEAD`, a
request h11 cannot parse `400` (`431` when its head is over `MAX_REQUEST_HEAD` bytes), and a
client that has not sent its request head within `REQUEST_TIMEOUT` seconds is disconnected
(`408`). Every answer carries `Content-Length` and `Connection: close`: one request per
connection (RFC 9112 §9.6), so nothing waits for a keep-alive client at shutdown. A request
body is never read.

Why h11 on `asyncio.start_server` rather than aiohttp or prometheus-client's own server:
`prometheus_client.start_http_server` runs a thread with a blocking server (no deadline per
request, and a thread that outlives the event loop at shutdown), and aiohttp brings a
framework and five compiled dependencies for two fixed routes. h11 is a small, well-kept
HTTP/1.1 parser without I/O (the model `mda.managesieve.wire` follows): it parses the request
line and headers, enforces the head size limit, and frames the response with its
`Content-Length`; this module only owns the socket, the deadline and the two routes.

A response goes out in one write; a client that reads nothing cannot stall the listener for
more than `REQUEST_TIMEOUT` seconds. At most `MAX_CONNECTIONS` connections are served at
once; more are closed without an answer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import h11

from mda.metrics import exposition
from mda.store import Store
from mda.store.errors import StoreUnavailable
from mda.store.health import check_database

log = logging.getLogger("mda.http")

HEALTH_TIMEOUT = 2.0  # seconds the database has to answer /healthz's query
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request head and read the answer
MAX_REQUEST_HEAD = 8192  # bytes of request line and headers h11 buffers at most
MAX_CONNECTIONS = 64  # connections served at once
ALLOWED_METHODS = ("GET", "HEAD")
TEXT = "text/plain; charset=utf-8"
# The classic text exposition format, which every Prometheus version and scraper reads; mda's
# metric names need none of the 1.0.0 format's escaping.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP response.

    Attributes:
        status: the status code (RFC 9110 §15).
        body: the content (not sent for HEAD).
        content_type: the `Content-Type` value.
        headers: more header fields, (name, value).
    """

    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, line: str, **kwargs: object) -> Answer:
        """A plain-text answer of one line (a newline is added)."""
        return cls(status, (line + "\n").encode("utf-8"), **kwargs)  # type: ignore[arg-type]


class HttpServer:
    """The `/healthz` and `/metrics` listener of one `mda serve`.

    Args:
        store: the database `/healthz` checks.
        health_timeout: seconds the database has to answer (`HEALTH_TIMEOUT`).
        request_timeout: seconds a client has to send its request head and read the answer
            (`REQUEST_TIMEOUT`).
    """

    def __init__(self, store: Store, *, health_timeout: float = HEALTH_TIMEOUT,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.store = store
        self.health_timeout = health_timeout
        self.request_timeout = request_timeout
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._healthy: bool | None = None  # last /healthz result, to log changes only

    async def listen(self, *, host: str | None = None, port: int | None = None,
                     path: Path | None = None,
                     sock: socket.socket | None = None) -> tuple[str, int] | str:
        """Start a listener.

        Args:
            host, port: TCP address (port 0: the system picks one).
            path: a unix-domain socket path instead of host and port.
            sock: an already bound, listening socket instead (`mda.server.bind_listener`).

        Returns:
            The bound (host, port), or the socket path.

        Raises:
            OSError: the address cannot be bound.
        """
        if sock is not None and sock.family == socket.AF_UNIX:
            self._servers.append(await asyncio.start_unix_server(self._accept, sock=sock))
            return str(sock.getsockname())
        if path is not None:
            server = await asyncio.start_unix_server(self._accept, str(path))
            self._servers.append(server)
            return str(path)
        if sock is not None:
            server = await asyncio.start_server(self._accept, sock=sock)
        else:
            server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop listening and end the connections still open (an answer being written is
        cut short: the client sees the connection close)."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= MAX_CONNECTIONS:
            log.warning("HTTP: %d connections open; closing a new one", len(self._tasks))
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request, answer it, close. Never raises except CancelledError."""
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        try:
            async with asyncio.timeout(self.request_timeout):
                request = await _read_request(connection, reader)
                if request is None:
                    return
                answer = await self._answer(request)
                await _write(connection, writer, answer, head_only=request.method == b"HEAD")
        except h11.RemoteProtocolError as exc:
            # RFC 9112 §2.2 / §5: a request that is not HTTP/1.1 gets 400 (431: head too big).
            await _write_error(connection, writer, Answer.text(
                exc.error_status_hint, f"bad request: {exc}"))
        except TimeoutError:
            await _write_error(connection, writer, Answer.text(408, "request timeout"))
        except (ConnectionError, h11.LocalProtocolError) as exc:
            log.debug("HTTP: connection ended: %r", exc)
        except Exception:
            log.exception("HTTP: internal error")
            await _write_error(connection, writer, Answer.text(500, "internal error"))

    async def _answer(self, request: h11.Request) -> Answer:
        """Route a request to `/healthz` or `/metrics` (RFC 9110 §15.5.5 404, §15.5.6 405)."""
        path = urlsplit(request.target.decode("ascii", "replace")).path
        route = {"/healthz": self.healthz, "/metrics": self.metrics}.get(path)
        method = request.method.decode("ascii", "replace")
        log.debug("HTTP: %s %s", method, path)
        if route is None:
            return Answer.text(404, f"not found: {path} (try /healthz or /metrics)")
        if method not in ALLOWED_METHODS:
            return Answer.text(405, f"method {method} not allowed",
                               headers=(("Allow", ", ".join(ALLOWED_METHODS)),))
        return await route()

    async def healthz(self) -> Answer:
        """`200 ok` when the database answers within `health_timeout`, else `503` with the
        reason. A change of state is logged (a warning when it fails, info when it
        recovers); a check that gives the same result as the last one is not."""
        try:
            await check_database(self.store, self.health_timeout)
        except StoreUnavailable as exc:
            if self._healthy is not False:
                log.warning("health check failing: %s", exc)
            self._healthy = False
            return Answer.text(503, str(exc))
        if self._healthy is False:
            log.info("health check passing again: the database answers")
        self._healthy = True
        return Answer.text(200, "ok")

    async def metrics(self) -> Answer:
        """Every metric of `mda.metrics.registry()`, Prometheus text format 0.0.4 (with
        workers the sum of every worker's files, read here: a few small files per worker)."""
        return Answer(200, exposition(), content_type=METRICS_CONTENT_TYPE)


async def _read_request(connection: h11.Connection,
                        reader: asyncio.StreamReader) -> h11.Request | None:
    """The request head, or None when the client closed before sending one.

    At most `MAX_REQUEST_HEAD` bytes are read while the head is incomplete.

    Raises:
        h11.RemoteProtocolError: the bytes are not an HTTP/1.x request, the connection
            ended in the middle of one, or the head is larger than `MAX_REQUEST_HEAD`
            (status hint 431, RFC 6585 §5).
    """
    received = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            if received >= MAX_REQUEST_HEAD:
                raise h11.RemoteProtocolError(
                    f"request head larger than {MAX_REQUEST_HEAD} bytes", error_status_hint=431)
            data = await reader.read(min(4096, MAX_REQUEST_HEAD - received))
            received += len(data)
            connection.receive_data(data)  # b"" at EOF
        elif isinstance(event, h11.Request):
            return event
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _response_bytes(connection: h11.Connection, answer: Answer, *, head_only: bool) -> bytes:
    """The whole response, framed by h11 with Content-Length and Connection: close."""
    headers = [("Content-Type", answer.content_type),
               ("Content-Length", str(len(answer.body))),
               ("Cache-Control", "no-store"),
               ("Connection", "close"),
               ("Date", formatdate(usegmt=True)),
               *answer.headers]
    data = connection.send(h11.Response(status_code=answer.status, headers=headers,
                                        reason=HTTPStatus(answer.status).phrase)) or b""
    if not head_only and answer.body:
        data += connection.send(h11.Data(data=answer.body)) or b""
    return data + (connection.send(h11.EndOfMessage()) or b"")


async def _write(connection: h11.Connection, writer: asyncio.StreamWriter, answer: Answer, *,
                 head_only: bool) -> None:
    writer.write(_response_bytes(connection, answer, head_only=head_only))
    await writer.drain()


async def _write_error(connection: h11.Connection, writer: asyncio.StreamWriter,
                       answer: Answer) -> None:
    """Answer an error when h11 still lets us (no response started), then give up; a client
    that does not read it within a second is not waited for."""
    if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        async with asyncio.timeout(1.0):
            await _write(connection, writer, answer, head_only=False)
    except (TimeoutError, ConnectionError, h11.LocalProtocolError):
        pass
