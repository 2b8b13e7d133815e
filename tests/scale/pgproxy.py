"""A TCP proxy between mda and PostgreSQL that a test can cut, freeze and restore.

The machine's PostgreSQL cannot be restarted by a test; what mda sees of a restart or an
outage is its connections breaking and new ones failing, which the proxy reproduces:
- `cut()`: reset every proxied connection and refuse new ones (accepted, then reset), as when
  the server restarts or the host is gone;
- `freeze()`: keep the connections open but forward nothing, as when the network drops
  packets silently (only timeouts end a wait);
- `restore()`: forward again; new connections reach the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from sqlalchemy.engine import make_url


class PgProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to `upstream` host and port.

    Use `await PgProxy.start(url)`; `url(database_url)` rewrites a database URL to go
    through the proxy; `close()` ends everything.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.accepting = True
        self.connections = 0  # accepted and forwarded, in total
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.base_events.Server | None = None

    @classmethod
    async def start(cls, database_url: str) -> PgProxy:
        """A running proxy to the server of `database_url`."""
        url = make_url(database_url)
        proxy = cls(url.host or "127.0.0.1", url.port or 5432)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        return proxy

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def url(self, database_url: str) -> str:
        """`database_url` with host and port replaced by the proxy's."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port) \
            .render_as_string(hide_password=False)

    def cut(self) -> None:
        """Reset every open connection (both sides) and refuse new ones."""
        self.accepting = False
        for client, server in list(self._pairs):
            _reset(client)
            _reset(server)
        self._pairs.clear()

    def freeze(self) -> None:
        """Stop forwarding bytes; connections stay open."""
        self._flowing.clear()

    def restore(self) -> None:
        """Accept and forward again."""
        self.accepting = True
        self._flowing.set()

    async def close(self) -> None:
        """Stop listening and end every connection."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                if pair not in self._pairs:
                    return
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if pair in self._pairs:
                self._pairs.discard(pair)
                for writer in pair:
                    with contextlib.suppress(Exception):
                        writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a reset path would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
