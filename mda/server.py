"""The `mda serve` service: listen for LMTP, deliver, shut down cleanly.

Lifecycle:
1. `prepare_database(settings)` creates the SQLite directory if needed and applies the
   alembic migrations (`mda.store.migrate.upgrade`; concurrent starts on one database
   migrate it once).
2. `bind_listeners(settings)` binds every configured listener without an event loop:
   LMTP on `settings.lmtp_listen`, ManageSieve on `settings.managesieve_listen` and with
   implicit TLS on `settings.managesieve_tls_listen`, HTTP (`/healthz`, `/metrics`:
   `mda.http`) on `settings.http_listen`; the last three are off when empty. With
   `--workers N` the pre-fork parent (`mda.prefork`) does this once and its N workers serve
   the same sockets; otherwise `serve` does it itself.
3. `serve(settings)` builds the `Store` (pool and timeouts from `settings.engine_options()`)
   and the `Deliverer`, serves the listeners and logs where: `listening for ManageSieve on
   127.0.0.1:4190 (...)`, `listening for ManageSieve over TLS on ...`, `listening for HTTP
   on 0.0.0.0:8080 (/healthz, /metrics)`, then last `listening for LMTP on 127.0.0.1:2424
   (...)`. The TLS certificate (`tls_cert`, `tls_key`) is loaded once (in the parent, with
   workers); an unreadable one stops the start with a one-line error. Message blobs that no
   copy refers to (a delivery cut off by a database outage) are swept at start and hourly.
4. SIGHUP is logged and ignored (nothing is reloaded). On SIGTERM or SIGINT: stop
   accepting connections; idle connections get `421 4.3.2` (ManageSieve: `BYE`) and are
   closed; a connection in the middle of a transaction finishes it for up to
   `settings.shutdown_timeout` seconds. Then connections that are idle or still
   receiving commands or message text get `421 4.3.2` and are closed (nothing of theirs was
   stored; the MTA retries), while a delivery that has started always runs to its end and
   is answered and logged: it is bounded by the store's own timeouts (SQLite busy timeout,
   PostgreSQL statement timeout, connect and pool timeouts), never cancelled half-way. Then
   the engine is disposed (at most `DISPOSE_TIMEOUT` seconds) and `serve` returns, leaving
   no thread behind that would keep the process alive; the owner of the sockets closes them
   and removes unix-domain socket files.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mda.config import Settings
from mda.delivery import Deliverer
from mda.http import HttpServer
from mda.lmtp import ConnectionRegistry, DeliveryHandler, LMTPProtocol
from mda.managesieve import ManageSieveServer, ServerContext, TLSSetupError, load_tls_context
from mda.store.blobs import sweep_orphan_blobs
from mda.store.engine import Store, ensure_sqlite_directory, safe_url, sqlite_path
from mda.store.migrate import upgrade

log = logging.getLogger("mda.server")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FORMAT_WORKERS = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class ListenError(ValueError):
    """The listen address cannot be parsed or bound; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the LMTP listener binds.

    Attributes:
        host: IPv4/IPv6 address or host name for TCP; None for a unix-domain socket.
        port: TCP port (0 lets the system choose); None for a unix-domain socket.
        path: the socket file for `unix:/path`; None for TCP.
    """

    host: str | None = None
    port: int | None = None
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """Parse `host:port`, `[v6addr]:port` or `unix:/path/to/socket`.

        Args:
            text: the `MDA_LMTP_LISTEN` value.

        Returns:
            The parsed address.

        Raises:
            ListenError: the text is none of the three forms, or the port is not 0..65535.
        """
        value = text.strip()
        if value.startswith("unix:"):
            path = value[len("unix:"):]
            if not path:
                raise ListenError(f"listen address {text!r}: unix: needs a socket path")
            return cls(path=Path(path))
        if value.startswith("["):
            host, bracket, rest = value[1:].partition("]")
            if not bracket or not rest.startswith(":"):
                raise ListenError(f"listen address {text!r}: use [v6address]:port")
            port_text = rest[1:]
        else:
            host, colon, port_text = value.rpartition(":")
            if not colon or not host or ":" in host:
                raise ListenError(
                    f"listen address {text!r}: use host:port, [v6address]:port or unix:/path")
        if not port_text.isdigit() or int(port_text) > 65535:
            raise ListenError(f"listen address {text!r}: port must be a number 0..65535")
        return cls(host=host, port=int(port_text))

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in (self.host or "") else f"{self.host}:{self.port}"


def configure_logging(settings: Settings) -> None:
    """Log to stderr at `settings.log_level`, one line per event (`LOG_FORMAT`; with
    `settings.workers` > 1 `LOG_FORMAT_WORKERS`, whose lines name their process).

    aiosmtpd's own per-command INFO lines (logger `mail.log`) are shown only at DEBUG.
    """
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, force=True,
                        format=LOG_FORMAT if settings.workers == 1 else LOG_FORMAT_WORKERS)
    logging.getLogger("mail.log").setLevel(logging.DEBUG if level <= logging.DEBUG
                                           else logging.WARNING)


def prepare_database(settings: Settings) -> None:
    """Create the SQLite directory if needed and apply the schema migrations.

    Raises:
        mda.store.errors.StoreUnavailable: the database cannot be reached or migrated.
    """
    ensure_sqlite_directory(settings.database_url)
    upgrade(settings.database_url)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by an earlier run; refuse to touch any other file."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"cannot listen on unix:{path}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
    else:
        raise ListenError(f"cannot listen on unix:{path}: another server is listening there")
    finally:
        probe.close()


# Connections the kernel queues on a listening socket before one is accepted (asyncio's
# default backlog).
BACKLOG = 100


@dataclass(slots=True)
class BoundListener:
    """A listen address bound to its listening sockets (more than one when a host name
    resolves to several addresses), before any event loop serves them.

    Sockets bound here can be served by this process or by forked workers
    (`mda.prefork`): every worker accepts from the same kernel queue.

    Attributes:
        service: "LMTP", "ManageSieve", "ManageSieve over TLS" or "HTTP", for messages.
        address: the address as configured.
        sockets: the listening sockets (non-blocking).
        where: the bound address as text, with the real port when port 0 was asked for.
    """

    service: str
    address: ListenAddress
    sockets: list[socket.socket]
    where: str

    def close(self, *, unlink: bool) -> None:
        """Close the sockets; with `unlink`, remove a unix-domain socket file too."""
        for sock in self.sockets:
            sock.close()
        if unlink and self.address.path is not None:
            try:
                self.address.path.unlink()
            except FileNotFoundError:
                pass


def bind_listener(address: ListenAddress, service: str, *, label: str | None = None,
                  world_writable: bool = False) -> BoundListener:
    """Bind and listen on `address` (no event loop needed).

    A unix-domain socket file left by an earlier run is removed first (any other file at the
    path is refused). TCP sockets get SO_REUSEADDR (a restart binds at once despite
    connections in TIME_WAIT) and IPv6 ones IPV6_V6ONLY, as asyncio sets them; with port 0
    every address of the host gets the same port the first one was given.

    Args:
        address: where to listen.
        service: the service name for `BoundListener.service`.
        label: the start of an error message; default `cannot listen for SERVICE on ADDR`.
        world_writable: make a unix-domain socket file connectable by every user (mode
            0666): the MTA runs as another user, and the directory decides who gets in.

    Returns:
        The bound listener.

    Raises:
        ListenError: `LABEL: reason` (in use, permission denied, unknown host, ...).
    """
    label = label or f"cannot listen for {service} on {address}"
    sockets: list[socket.socket] = []
    try:
        if address.path is not None:
            _remove_stale_socket(address.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(str(address.path))
            if world_writable:
                address.path.chmod(0o666)
            where = str(address)
        else:
            port = address.port
            for family, kind, proto, _, sockaddr in _addresses(address):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((sockaddr[0], port, *sockaddr[2:]))
                port = port or sock.getsockname()[1]
            bound = sockets[0].getsockname()
            where = str(ListenAddress(host=bound[0], port=bound[1]))
        for sock in sockets:
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except ListenError:
        for sock in sockets:
            sock.close()
        raise
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(f"{label}: {exc.strerror or exc}") from exc
    return BoundListener(service, address, sockets, where)


def _addresses(address: ListenAddress) -> list[tuple]:
    """The distinct getaddrinfo results for a TCP listen address (AI_PASSIVE).

    Raises:
        OSError: the host cannot be resolved (socket.gaierror).
    """
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    seen, unique = set(), []
    for info in infos:
        if info[4][:2] not in seen:
            seen.add(info[4][:2])
            unique.append(info)
    return unique


@dataclass(slots=True)
class Listeners:
    """Every listener `mda serve` is configured for, bound.

    Attributes:
        lmtp: MDA_LMTP_LISTEN.
        managesieve: MDA_MANAGESIEVE_LISTEN, None when empty.
        managesieve_tls: MDA_MANAGESIEVE_TLS_LISTEN, None when empty.
        http: MDA_HTTP_LISTEN, None when empty.
    """

    lmtp: BoundListener
    managesieve: BoundListener | None = None
    managesieve_tls: BoundListener | None = None
    http: BoundListener | None = None

    def all(self) -> list[BoundListener]:
        """The bound listeners, LMTP first."""
        return [bound for bound in (self.lmtp, self.managesieve, self.managesieve_tls,
                                    self.http) if bound is not None]

    def close(self, *, unlink: bool) -> None:
        """Close every socket; with `unlink`, remove the unix-domain socket files."""
        for bound in self.all():
            bound.close(unlink=unlink)


def _optional_address(text: str, setting: str) -> ListenAddress | None:
    """Parse an optional listen setting; None when empty.

    Raises:
        ListenError: `SETTING: reason`.
    """
    if not text.strip():
        return None
    try:
        return ListenAddress.parse(text)
    except ListenError as exc:
        raise ListenError(f"{setting}: {exc}") from exc


def bind_listeners(settings: Settings) -> Listeners:
    """Parse and bind every configured listen address: `lmtp_listen`, `managesieve_listen`,
    `managesieve_tls_listen`, `http_listen` (the last three are off when empty).

    On failure nothing stays bound.

    Raises:
        ListenError: an address is invalid (named by its MDA_* variable, except LMTP's) or
            cannot be bound (`cannot listen on ADDR: reason` for LMTP, `cannot listen for
            SERVICE on ADDR: reason` for the others).
    """
    lmtp_address = ListenAddress.parse(settings.lmtp_listen)
    others = [(_optional_address(settings.managesieve_listen, "MDA_MANAGESIEVE_LISTEN"),
               "ManageSieve"),
              (_optional_address(settings.managesieve_tls_listen, "MDA_MANAGESIEVE_TLS_LISTEN"),
               "ManageSieve over TLS"),
              (_optional_address(settings.http_listen, "MDA_HTTP_LISTEN"), "HTTP")]
    listeners = Listeners(bind_listener(lmtp_address, "LMTP",
                                        label=f"cannot listen on {lmtp_address}",
                                        world_writable=True))
    try:
        bound = [bind_listener(address, service.removesuffix(" over TLS"),
                               world_writable=service.startswith("ManageSieve"))
                 if address is not None else None for address, service in others]
    except BaseException:
        listeners.close(unlink=True)
        raise
    listeners.managesieve, listeners.managesieve_tls, listeners.http = bound
    return listeners


# A worker sharing the LMTP sockets with others waits this long per connection it already
# has before accepting the next (at most ACCEPT_DELAY_MAX), so the least busy worker takes
# it (`SharedAcceptor`).
ACCEPT_DELAY_PER_CONNECTION = 0.002
ACCEPT_DELAY_MAX = 0.05
# Seconds to stop accepting after the process ran out of file descriptors or memory.
ACCEPT_PAUSE_ON_ERROR = 1.0


class SharedAcceptor:
    """Accepts LMTP connections from a listening socket that other worker processes accept
    from too (`mda.prefork`): one connection at a time, the less busy worker first.

    asyncio's own servers accept every queued connection at each wake-up, so of several idle
    workers woken by a burst one takes them all. Here a worker accepts one connection per
    wake-up, and one that already has k connections first waits
    min(k x `ACCEPT_DELAY_PER_CONNECTION`, `ACCEPT_DELAY_MAX`) seconds, leaving the
    connection to an idler worker: connections spread by load.

    Args:
        sock: the shared listening socket (non-blocking).
        factory: makes the protocol of each accepted connection.
        load: the number of connections this worker has open now.
    """

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol],
                 load: Callable[[], int]) -> None:
        self.sock = sock
        self._factory = factory
        self._load = load
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._loop.add_reader(sock, self._readable)

    def _readable(self) -> None:
        delay = min(self._load() * ACCEPT_DELAY_PER_CONNECTION, ACCEPT_DELAY_MAX)
        if delay:
            self._pause(delay)
        else:
            self._accept()

    def _pause(self, seconds: float, then: Callable[[], None] | None = None) -> None:
        """Stop watching the socket for `seconds`, then call `then` (default: accept)."""
        self._loop.remove_reader(self.sock)
        self._timer = self._loop.call_later(seconds, then or self._accept)

    def _resume(self) -> None:
        self._timer = None
        if not self._closed:
            self._loop.add_reader(self.sock, self._readable)

    def _accept(self) -> None:
        """Accept one connection if one is still queued, and watch the socket again."""
        self._timer = None
        if self._closed:
            return
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            pass  # another worker took it, or the client gave up
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM
            log.error("cannot accept LMTP connections for %.0f s: %s", ACCEPT_PAUSE_ON_ERROR,
                      exc.strerror or exc)
            self._pause(ACCEPT_PAUSE_ON_ERROR, self._resume)
            return
        else:
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._loop.add_reader(self.sock, self._readable)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, sock=conn)
        except Exception:
            log.exception("cannot set up an accepted LMTP connection")
            conn.close()

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening socket."""
        return [self.sock]

    def close(self) -> None:
        """Stop accepting and close this process's copy of the socket."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._loop.remove_reader(self.sock)
        self.sock.close()


class ServerGroup:
    """The listeners serving one `BoundListener`, one per socket: asyncio servers, or
    `SharedAcceptor`s when the sockets are shared with other workers.

    Attributes:
        servers: the asyncio servers or acceptors.
    """

    def __init__(self, servers: list[asyncio.base_events.Server | SharedAcceptor]) -> None:
        self.servers = servers

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets, in binding order."""
        return [sock for server in self.servers for sock in server.sockets]

    def close(self) -> None:
        """Stop accepting (this process's copies of the sockets are closed)."""
        for server in self.servers:
            server.close()


def lmtp_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The STARTTLS context of `tls_cert`/`tls_key` for an LMTP listener, None without them.

    Raises:
        ListenError: the certificate or key cannot be loaded.
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        tls_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except OSError as exc:  # ssl.SSLError included
        raise ListenError(f"cannot load tls_cert {settings.tls_cert} / tls_key "
                          f"{settings.tls_key} for LMTP STARTTLS: "
                          f"{getattr(exc, 'strerror', None) or exc}") from exc
    return tls_context


async def serve_lmtp(bound: BoundListener, registry: ConnectionRegistry,
                     handler: DeliveryHandler, settings: Settings,
                     tls_context: ssl.SSLContext | None, *, shared: bool = False
                     ) -> ServerGroup:
    """Serve LMTP on already bound sockets.

    Args:
        bound: the listening sockets.
        registry: shared by the connections, for graceful shutdown.
        handler: the delivery hooks.
        settings: hostname and message size limit.
        tls_context: the context for STARTTLS (RFC 3207); None = not offered.
        shared: other worker processes accept from the same sockets (`SharedAcceptor`).

    Returns:
        The servers.
    """

    def factory() -> LMTPProtocol:
        return LMTPProtocol(handler, registry=registry, hostname=settings.hostname,
                            max_message_size=settings.max_message_size,
                            tls_context=tls_context)

    if shared:
        return ServerGroup([SharedAcceptor(sock, factory, lambda: len(registry.connections))
                            for sock in bound.sockets])
    loop = asyncio.get_running_loop()
    servers: list[asyncio.base_events.Server | SharedAcceptor] = []
    for sock in bound.sockets:
        if sock.family == socket.AF_UNIX:
            servers.append(await loop.create_unix_server(factory, sock=sock))
        else:
            servers.append(await loop.create_server(factory, sock=sock))
    return ServerGroup(servers)


async def start_listener(address: ListenAddress, registry: ConnectionRegistry,
                         handler: DeliveryHandler, settings: Settings,
                         tls_context: ssl.SSLContext | None = None
                         ) -> tuple[ServerGroup, str]:
    """Bind the LMTP listener and serve it.

    Args:
        address: where to listen.
        registry: shared by the connections, for graceful shutdown.
        handler: the delivery hooks.
        settings: hostname, message size limit, and `tls_cert`/`tls_key`: when set, LHLO
            offers STARTTLS (RFC 3207) with that certificate.
        tls_context: the server TLS context to use for STARTTLS instead of loading
            `tls_cert`/`tls_key` here (so a caller that already loaded them shares one).

    Returns:
        The servers and a description of the bound address (with the real port when port 0
        was asked for).

    Raises:
        ListenError: the address cannot be bound (in use, permission denied, bad host), or
            the certificate or key cannot be loaded.
    """
    if tls_context is None:
        tls_context = lmtp_tls_context(settings)
    bound = bind_listener(address, "LMTP", label=f"cannot listen on {address}",
                          world_writable=True)
    try:
        return await serve_lmtp(bound, registry, handler, settings, tls_context), bound.where
    except BaseException:
        bound.close(unlink=True)
        raise


def log_sighup_ignored() -> None:
    """SIGHUP does not stop or reload mda (its default action would kill the process, cutting
    deliveries in flight): settings and the TLS certificate are read at start, so say how to
    apply changes instead."""
    log.warning("SIGHUP ignored: settings and the TLS certificate are read at start; restart "
                "mda (SIGTERM, then start it again) to apply changes")


def describe_database(url: str) -> str:
    """The database for the startup line: the absolute file path for SQLite, otherwise the
    URL with any password masked.

    Args:
        url: the `MDA_DATABASE_URL` value.

    Returns:
        e.g. `sqlite /var/lib/mda/mda.sqlite3` or `postgresql+asyncpg://mda:***@db/mda`.
    """
    try:
        path = sqlite_path(url)
    except Exception:
        path = None
    if path is not None:
        return f"sqlite {path.resolve()}"
    return safe_url(url)


def server_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context of `tls_cert`/`tls_key`, loaded once for LMTP and ManageSieve.

    Returns:
        The context, or None when no certificate is configured.

    Raises:
        ListenError: the certificate or key cannot be loaded (the message names the files).
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        return load_tls_context(settings.tls_cert, settings.tls_key)
    except TLSSetupError as exc:
        raise ListenError(str(exc)) from exc


async def start_managesieve(store: Store, settings: Settings, listeners: Listeners,
                            tls_context: ssl.SSLContext | None = None
                            ) -> ManageSieveServer | None:
    """Serve ManageSieve on its bound listeners, logging where each listens.

    Args:
        store: the database the sessions use.
        settings: `allow_plaintext_auth` and the other ManageSieve settings.
        listeners: `managesieve` (plain, STARTTLS offered with a certificate) and
            `managesieve_tls` (implicit TLS); either may be None.
        tls_context: the server TLS context for STARTTLS and implicit TLS.

    Returns:
        The running server, or None when neither listener is configured.
    """
    if listeners.managesieve is None and listeners.managesieve_tls is None:
        return None
    server = ManageSieveServer(ServerContext(store, settings, tls_context=tls_context))
    try:
        if listeners.managesieve is not None:
            for sock in listeners.managesieve.sockets:
                await server.listen(sock=sock, tls=False)
            log.info("listening for ManageSieve on %s (%s; plain-text login %s)",
                     listeners.managesieve.where,
                     "STARTTLS offered" if tls_context else "no STARTTLS: MDA_TLS_CERT unset",
                     "allowed" if settings.allow_plaintext_auth
                     else "over TLS or from loopback only")
        if listeners.managesieve_tls is not None:
            for sock in listeners.managesieve_tls.sockets:
                await server.listen(sock=sock, tls=True)
            log.info("listening for ManageSieve over TLS on %s", listeners.managesieve_tls.where)
    except BaseException:
        await server.close(0)
        raise
    return server


async def start_http(store: Store, bound: BoundListener | None) -> HttpServer | None:
    """Serve `/healthz` and `/metrics` on the bound HTTP listener, logging
    `listening for HTTP on HOST:PORT (/healthz, /metrics)`.

    Returns:
        The running server, or None when `http_listen` is empty (`bound` is None).
    """
    if bound is None:
        return None
    server = HttpServer(store)
    for sock in bound.sockets:
        await server.listen(sock=sock)
    log.info("listening for HTTP on %s (/healthz, /metrics)", bound.where)
    return server


# Seconds between sweeps for message blobs no copy refers to.
BLOB_SWEEP_INTERVAL = 3600.0


async def _sweep_blobs(store: Store, stop: asyncio.Event) -> None:
    """At start and every `BLOB_SWEEP_INTERVAL` seconds until `stop` is set, delete message
    blobs that no copy refers to and that are older than `mda.store.blobs.ORPHAN_AGE`: those
    of deliveries cut off between storing the message and committing a copy (the database
    went away, or the process died). A failure is logged and retried at the next sweep."""
    while not stop.is_set():
        try:
            removed = await sweep_orphan_blobs(store)
        except Exception as exc:
            log.warning("could not sweep unreferenced message blobs: %s", exc)
        else:
            if removed:
                log.info("removed %d unreferenced message blob(s)", removed)
        try:
            await asyncio.wait_for(stop.wait(), BLOB_SWEEP_INTERVAL)
        except TimeoutError:
            pass


# Seconds between log lines while shutdown waits for deliveries in flight.
_WAIT_LOG_EVERY = 10.0


async def _wait_for_deliveries(registry: ConnectionRegistry) -> None:
    """Wait until every delivery in flight has ended and its connection closed, logging
    every `_WAIT_LOG_EVERY` seconds. Each delivery is bounded by the store's timeouts."""
    while not await registry.wait_idle(_WAIT_LOG_EVERY):
        log.warning("shutdown: still waiting for %d delivery(ies) in flight and %d "
                    "connection(s)", len(registry.deliveries), len(registry.connections))


async def serve(settings: Settings, listeners: Listeners | None = None,
                tls_context: ssl.SSLContext | None = None) -> None:
    """Run the LMTP, ManageSieve and HTTP services until SIGTERM or SIGINT, then shut down
    gracefully. From the end of the shutdown on, SIGTERM, SIGINT and SIGHUP are ignored
    for the rest of the process, which is meant to exit once this returns.

    The database must be prepared first (`prepare_database`).

    Args:
        settings: the service's settings.
        listeners: sockets bound by the caller (a pre-fork parent, `mda.prefork`), which
            keeps them and their socket files; None = bind them here (`bind_listeners`) and
            close them and remove their socket files at the end.
        tls_context: the TLS context of `tls_cert`/`tls_key` loaded by the caller; None =
            load it here.

    Raises:
        ListenError: a listen address is invalid or cannot be bound, or the certificate
            cannot be loaded.
        mda.store.errors.StoreUnavailable: the database URL is unusable.
    """
    if tls_context is None:
        tls_context = server_tls_context(settings)
    owned = listeners is None
    if listeners is None:
        listeners = bind_listeners(settings)
    try:
        await _serve(settings, listeners, tls_context, shared=not owned)
    finally:
        if owned:
            listeners.close(unlink=True)


async def _serve(settings: Settings, listeners: Listeners,
                 tls_context: ssl.SSLContext | None, *, shared: bool) -> None:
    """`serve` on bound listeners (`shared`: other workers accept from them too)."""
    store = Store(settings.database_url, settings.engine_options())
    try:
        deliverer = Deliverer(store, settings)
        registry = ConnectionRegistry()
        handler = DeliveryHandler(deliverer, settings.max_message_size)
        server = await serve_lmtp(listeners.lmtp, registry, handler, settings, tls_context,
                                  shared=shared)
        try:
            managesieve = await start_managesieve(store, settings, listeners, tls_context)
        except BaseException:
            server.close()
            raise
        try:
            http = await start_http(store, listeners.http)
        except BaseException:
            server.close()
            if managesieve is not None:  # no connection yet: returns at once
                await managesieve.close(settings.shutdown_timeout)
            raise
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, log_sighup_ignored)
        log.info("listening for LMTP on %s (hostname %s, max message size %d bytes, "
                 "database %s, sieve scripts %s)", listeners.lmtp.where, settings.hostname,
                 settings.max_message_size, describe_database(settings.database_url),
                 Path(settings.sieve_scripts_dir).resolve())
        sweeper = asyncio.create_task(_sweep_blobs(store, stop))
        await stop.wait()
        log.info("shutting down: no new connections; finishing deliveries in flight "
                 "(up to %.0f s)", settings.shutdown_timeout)
        server.close()
        if http is not None:
            await http.close()
        managesieve_closed = asyncio.create_task(
            managesieve.close(settings.shutdown_timeout) if managesieve is not None
            else asyncio.sleep(0))
        registry.drain()
        if not await registry.wait_idle(settings.shutdown_timeout):
            log.warning("shutdown timeout: closing %d connection(s) not delivering with 421; "
                        "letting %d delivery(ies) in flight finish",
                        sum(not c.delivering for c in registry.connections),
                        len(registry.deliveries))
            registry.cut_off()
            await _wait_for_deliveries(registry)
        await managesieve_closed
        await sweeper  # a sweep under way finishes (bounded by the store's timeouts)
        _ignore_signals_from_now_on(loop)
    finally:
        await _dispose(store)
    log.info("stopped")


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _ignore_signals_from_now_on(loop: asyncio.AbstractEventLoop) -> None:
    """Hand SIGTERM, SIGINT and SIGHUP from the loop to SIG_IGN for the rest of the
    process: a process already shutting down gets more of them (a pre-fork parent forwards
    the SIGTERM that the whole process group got too, systemd's KillMode=control-group),
    and the default action would kill it while it closes its database pool. They are
    blocked while the handlers change, so none arrives to the default action in between;
    one that came then is discarded when they are unblocked."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)  # restores SIG_DFL ...
            signal.signal(signum, signal.SIG_IGN)  # ... replaced before it can act
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


# Seconds to close the pooled database connections at shutdown.
DISPOSE_TIMEOUT = 10.0


async def _dispose(store: Store) -> None:
    """Close the pooled connections, giving up after `DISPOSE_TIMEOUT` seconds: a database
    that stopped answering (a silent network) must not keep the process from exiting."""
    try:
        await asyncio.wait_for(store.dispose(), DISPOSE_TIMEOUT)
    except TimeoutError:
        log.warning("database connections not closed within %.0f s; exiting anyway",
                    DISPOSE_TIMEOUT)
