"""The asyncio ManageSieve listener (RFC 5804): one task per connection around a `Session`.

    server = ManageSieveServer(ServerContext(store, settings, tls_context=context))
    where = await server.listen(host="127.0.0.1", port=4190)           # plain + STARTTLS
    where = await server.listen(host="0.0.0.0", port=5190, tls=True)   # implicit TLS
    ...
    await server.close(timeout=30)                                     # on SIGTERM

Each connection reads with `managesieve_idle_timeout` (idle longer: `BYE "idle timeout"`,
closed), parses with `CommandParser` and answers with `Session.handle`. Over
`managesieve_max_connections` a new connection gets `BYE "too many connections"` and is
closed. STARTTLS (RFC 5804 §2.2) upgrades the stream in place with
`StreamWriter.start_tls`: reading stops before the OK is sent, and plaintext the client sent
before that OK (behind the STARTTLS command) is thrown away, never read as if it had come
encrypted. A failed handshake closes the connection.

Shutdown (`close`): the listeners stop accepting; connections waiting for a command get
`BYE "server shutting down"` and are closed; a command in progress finishes, is answered,
and then its connection gets the BYE. After `timeout` seconds, connections still sending a
command are closed with the BYE too; commands already running are awaited (each is bounded
by the store's own timeouts). Nothing here lets one connection's error reach the listener.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path

from mda.managesieve.session import Peer, Reply, ServerContext, Session
from mda.managesieve.wire import NEED_DATA, CommandParser, encode_response

log = logging.getLogger("mda.managesieve")

READ_SIZE = 64 * 1024


class TLSSetupError(ValueError):
    """The TLS certificate or key cannot be loaded; the message names the file and why."""


def load_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The server-side TLS context for STARTTLS and implicit TLS, loaded once at startup.

    TLS 1.2 or newer, Python's default cipher choice.

    Args:
        cert: PEM certificate chain (server certificate first).
        key: PEM private key of that certificate (not encrypted).

    Returns:
        The context.

    Raises:
        TLSSetupError: a file is unreadable, not PEM, or the key does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as exc:
        raise TLSSetupError(f"cannot load TLS certificate {cert} with key {key}: "
                            f"{_pem_problem(cert, key, exc)}") from exc
    except OSError as exc:
        raise TLSSetupError(f"cannot load TLS certificate {cert} with key {key}: "
                            f"{exc.strerror or exc}") from exc
    return context


def _pem_problem(cert: Path, key: Path, exc: ssl.SSLError) -> str:
    """Say in words what OpenSSL's `PEM lib` or `KEY_VALUES_MISMATCH` meant."""
    try:
        cert_text = Path(cert).read_bytes()
        key_text = Path(key).read_bytes()
    except OSError as read_error:
        return read_error.strerror or str(read_error)
    if b"-----BEGIN CERTIFICATE-----" not in cert_text:
        return f"{cert} holds no PEM certificate"
    if b"PRIVATE KEY-----" not in key_text:
        return f"{key} holds no PEM private key"
    if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
        return "the private key does not belong to the certificate"
    return f"unusable certificate or key ({exc.reason or exc})"


class Connection:
    """One client connection: the read/answer loop.

    Args:
        server: the listener's server (connection limit, shutdown).
        reader, writer: the asyncio streams.
        tls: the connection is already encrypted (implicit TLS).
    """

    def __init__(self, server: ManageSieveServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, tls: bool) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        context = server.context
        self.peer = Peer.from_sockname(writer.get_extra_info("peername"))
        self.session = Session(context, self.peer, tls=tls)
        self.parser = CommandParser(max_literal=context.max_literal)
        self.timeout = context.settings.managesieve_idle_timeout
        self.idle = False  # waiting for the start of a command
        self.busy = False  # a command is being answered
        self.closed = False

    async def run(self) -> None:
        """Serve the connection until LOGOUT, EOF, timeout, shutdown or a socket error."""
        log.debug("ManageSieve %s: connected", self.peer.description)
        try:
            await self._write(self.session.greeting())
            await self._loop()
        except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
            log.debug("ManageSieve %s: connection lost: %s", self.peer.description, exc)
        except Exception:  # the listener must never die of one connection
            log.exception("ManageSieve %s: connection failed", self.peer.description)
        finally:
            self._close()
            log.debug("ManageSieve %s: closed", self.peer.description)

    async def _loop(self) -> None:
        while not self.closed:
            event = self.parser.next_event()
            if event is NEED_DATA:
                if self.server.closing:
                    await self.say_bye(Session.shutdown_notice())
                    return
                data = await self._read()
                if data is None or self.closed:
                    return
                self.parser.receive_data(data)
                continue
            self.busy = True
            try:
                reply = await self.session.handle(event)
            finally:
                self.busy = False
            if self.closed:
                return
            if reply.starttls:
                # Stop reading before the OK goes out: whatever arrived until now was sent
                # in plaintext before the client could know TLS was agreed, and the TLS
                # handshake that follows the OK must reach the TLS layer, not our buffer.
                self.writer.transport.pause_reading()
            await self._write(reply.data)
            if reply.close:
                return
            if reply.starttls and not await self._starttls():
                return
            if self.server.closing and not self.parser.pending:
                await self.say_bye(Session.shutdown_notice())
                return

    async def _read(self) -> bytes | None:
        """Bytes from the client; None at EOF or after the idle timeout (BYE sent)."""
        self.idle = not self.parser.pending
        try:
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), self.timeout)
        except TimeoutError:
            log.info("ManageSieve %s: idle for %.0f s, closing", self.peer.description,
                     self.timeout)
            await self.say_bye(encode_response("BYE", text="idle timeout"))
            return None
        finally:
            self.idle = False
        return data or None

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def _starttls(self) -> bool:
        """Upgrade to TLS after STARTTLS's OK (RFC 5804 §2.2); False when it failed."""
        context = self.server.context.tls_context
        assert context is not None
        dropped = self.parser.discard_buffered()
        # Bytes the stream read ahead of the parser (before reading was paused) arrived
        # before the OK, unencrypted, too. StreamReader has no public way to drop them.
        buffered = getattr(self.reader, "_buffer", None)
        if buffered:
            dropped += len(buffered)
            buffered.clear()
        if dropped:
            log.warning("ManageSieve %s: discarded %d octets sent after STARTTLS before the "
                        "TLS handshake", self.peer.description, dropped)
        try:
            await self.writer.start_tls(context, ssl_handshake_timeout=self.timeout)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            log.warning("ManageSieve %s: TLS handshake failed: %s", self.peer.description, exc)
            return False
        await self._write(self.session.tls_started())
        return True

    async def say_bye(self, data: bytes) -> None:
        """Send a BYE (or any last words) and close; errors on a dead socket are ignored."""
        if self.closed:
            return
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), 5)
        except (ConnectionError, TimeoutError, OSError, RuntimeError):
            pass
        self._close()

    def cut_off(self) -> None:
        """Send BYE without waiting and close now (shutdown; the task sees EOF)."""
        if self.closed:
            return
        try:
            self.writer.write(Session.shutdown_notice())
        except (ConnectionError, OSError, RuntimeError):
            pass
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


class ManageSieveServer:
    """The ManageSieve listeners of one `mda serve` and their connections.

    Args:
        context: what the sessions share (store, settings, TLS context, throttle).
    """

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.connections: set[Connection] = set()
        self.closing = False
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    async def listen(self, *, host: str | None = None, port: int | None = None,
                     path: Path | None = None, sock: socket.socket | None = None,
                     tls: bool = False) -> tuple[str, int] | str:
        """Start a listener.

        Args:
            host, port: TCP address (port 0: the system picks one).
            path: a unix-domain socket path instead of host and port; the socket file is
                made mode 0666 (a webmail may run as another user).
            sock: an already bound, listening socket instead (`mda.server.bind_listener`).
            tls: implicit TLS (the handshake comes first; no STARTTLS).

        Returns:
            The bound (host, port), or the socket path.

        Raises:
            OSError: the address cannot be bound.
            ValueError: `tls` without a TLS context.
        """
        ssl_context = None
        if tls:
            if self.context.tls_context is None:
                raise ValueError("implicit TLS needs a certificate")
            ssl_context = self.context.tls_context

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(reader, writer, tls=tls)

        if sock is not None and sock.family == socket.AF_UNIX:
            self._servers.append(await asyncio.start_unix_server(accept, sock=sock,
                                                                 ssl=ssl_context))
            return str(sock.getsockname())
        if path is not None:
            server = await asyncio.start_unix_server(accept, str(path), ssl=ssl_context)
            Path(path).chmod(0o666)  # logins are authenticated; the directory limits access
            self._servers.append(server)
            return str(path)
        if sock is not None:
            server = await asyncio.start_server(accept, sock=sock, ssl=ssl_context)
        else:
            server = await asyncio.start_server(accept, host, port, ssl=ssl_context,
                                                reuse_address=True)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                     tls: bool) -> None:
        connection = Connection(self, reader, writer, tls=tls)
        limit = self.context.settings.managesieve_max_connections
        if self.closing or len(self.connections) >= limit:
            reason = "server shutting down" if self.closing else "too many connections"
            if not self.closing:
                log.warning("ManageSieve %s: refused, %d connections open",
                            connection.peer.description, len(self.connections))
            await connection.say_bye(encode_response("BYE", text=reason))
            return
        self.connections.add(connection)
        self._empty.clear()
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
            if task is not None:
                self._tasks.discard(task)
            if not self.connections:
                self._empty.set()

    async def close(self, timeout: float) -> None:
        """Stop listening and end every connection (see the module text).

        Args:
            timeout: seconds connections in the middle of a command get to finish it.
        """
        self.closing = True
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            if connection.idle:
                connection.cut_off()
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            remaining = [c for c in self.connections if not c.busy]
            log.warning("ManageSieve shutdown timeout: closing %d connection(s); letting "
                        "%d command(s) in progress finish", len(remaining),
                        len(self.connections) - len(remaining))
            for connection in remaining:
                connection.cut_off()
            await self._empty.wait()
        for server in self._servers:
            await server.wait_closed()


__all__ = ["Connection", "ManageSieveServer", "Reply", "TLSSetupError", "load_tls_context"]
