"""The `mda serve` service: listen for LMTP, deliver, shut down cleanly.

Lifecycle:
1. `prepare_database(settings)` creates the SQLite directory if needed and applies the
   alembic migrations (`mda.store.migrate.upgrade`).
2. `serve(settings)` builds the `Store` and the `Deliverer`, listens on
   `settings.lmtp_listen` and, unless it is empty, for ManageSieve on
   `settings.managesieve_listen` (and with implicit TLS on `settings.managesieve_tls_listen`),
   for HTTP (`/healthz`, `/metrics`: `mda.http`) on `settings.http_listen` unless it is
   empty, and logs where: `listening for ManageSieve on 127.0.0.1:4190 (...)`, `listening for
   ManageSieve over TLS on ...`, `listening for HTTP on 0.0.0.0:8080 (/healthz, /metrics)`,
   then last `listening for LMTP on 127.0.0.1:2424 (...)`.
   The TLS certificate (`tls_cert`, `tls_key`) is loaded once, here; an unreadable one stops
   the start with a one-line error.
3. On SIGTERM or SIGINT: stop accepting connections; idle connections get
   `421 4.3.2` (ManageSieve: `BYE`) and are closed; a connection in the middle of a transaction finishes it
   for up to `settings.shutdown_timeout` seconds. Then connections that are idle or still
   receiving commands or message text get `421 4.3.2` and are closed (nothing of theirs was
   stored; the MTA retries), while a delivery that has started always runs to its end and
   is answered and logged: it is bounded by the store's own timeouts (SQLite busy timeout,
   connect timeout), never cancelled half-way. Then the engine is disposed and `serve`
   returns, leaving no thread behind that would keep the process alive.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from mda.config import Settings
from mda.delivery import Deliverer
from mda.http import HttpServer
from mda.lmtp import ConnectionRegistry, DeliveryHandler, LMTPProtocol
from mda.managesieve import ManageSieveServer, ServerContext, TLSSetupError, load_tls_context
from mda.store.engine import Store, ensure_sqlite_directory, safe_url, sqlite_path
from mda.store.migrate import upgrade

log = logging.getLogger("mda.server")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    """Log to stderr at `settings.log_level`, one line per event (`LOG_FORMAT`).

    aiosmtpd's own per-command INFO lines (logger `mail.log`) are shown only at DEBUG.
    """
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level, format=LOG_FORMAT, force=True)
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


async def start_listener(address: ListenAddress, registry: ConnectionRegistry,
                         handler: DeliveryHandler, settings: Settings,
                         tls_context: ssl.SSLContext | None = None
                         ) -> tuple[asyncio.base_events.Server, str]:
    """Bind the LMTP listener.

    Args:
        address: where to listen.
        registry: shared by the connections, for graceful shutdown.
        handler: the delivery hooks.
        settings: hostname, message size limit, and `tls_cert`/`tls_key`: when set, LHLO
            offers STARTTLS (RFC 3207) with that certificate.
        tls_context: the server TLS context to use for STARTTLS instead of loading
            `tls_cert`/`tls_key` here (so a caller that already loaded them shares one).

    Returns:
        The asyncio server and a description of the bound address (with the real port
        when port 0 was asked for).

    Raises:
        ListenError: the address cannot be bound (in use, permission denied, bad host), or
            the certificate or key cannot be loaded.
    """
    if tls_context is None and settings.tls_cert is not None and settings.tls_key is not None:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            tls_context.load_cert_chain(settings.tls_cert, settings.tls_key)
        except OSError as exc:  # ssl.SSLError included
            raise ListenError(f"cannot load tls_cert {settings.tls_cert} / tls_key "
                              f"{settings.tls_key} for LMTP STARTTLS: "
                              f"{getattr(exc, 'strerror', None) or exc}") from exc

    def factory() -> LMTPProtocol:
        return LMTPProtocol(handler, registry=registry, hostname=settings.hostname,
                            max_message_size=settings.max_message_size,
                            tls_context=tls_context)

    loop = asyncio.get_running_loop()
    try:
        if address.path is not None:
            _remove_stale_socket(address.path)
            server = await loop.create_unix_server(factory, str(address.path))
            # Whoever may reach the socket file may connect, as on a loopback port: the MTA
            # runs as another user (Postfix's lmtp as `postfix`); the directory decides.
            address.path.chmod(0o666)
            return server, str(address)
        server = await loop.create_server(factory, address.host, address.port,
                                          reuse_address=True)
    except OSError as exc:
        raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    bound = server.sockets[0].getsockname()
    return server, str(ListenAddress(host=bound[0], port=bound[1]))


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


async def start_managesieve(store: Store, settings: Settings,
                            tls_context: ssl.SSLContext | None = None
                            ) -> ManageSieveServer | None:
    """Start the ManageSieve listeners that are configured, logging where each listens.

    Args:
        store: the database the sessions use.
        settings: `managesieve_listen` (host:port or unix:/path; empty = off),
            `managesieve_tls_listen` (implicit TLS; empty = off), `tls_cert`, `tls_key`.
        tls_context: the server TLS context for STARTTLS and implicit TLS; loaded from
            `tls_cert`/`tls_key` when not given.

    Returns:
        The running server, or None when both listen settings are empty.

    Raises:
        ListenError: an address is invalid or cannot be bound, or the certificate or key
            cannot be loaded.
    """
    if tls_context is None:
        tls_context = server_tls_context(settings)
    plain, implicit = settings.managesieve_listen.strip(), settings.managesieve_tls_listen.strip()
    if not plain and not implicit:
        return None
    try:
        plain_address = ListenAddress.parse(plain) if plain else None
    except ListenError as exc:
        raise ListenError(f"MDA_MANAGESIEVE_LISTEN: {exc}") from exc
    try:
        implicit_address = ListenAddress.parse(implicit) if implicit else None
    except ListenError as exc:
        raise ListenError(f"MDA_MANAGESIEVE_TLS_LISTEN: {exc}") from exc
    server = ManageSieveServer(ServerContext(store, settings, tls_context=tls_context))
    try:
        if plain_address is not None:
            where = await _bind_managesieve(server, plain_address, tls=False)
            log.info("listening for ManageSieve on %s (%s; plain-text login %s)", where,
                     "STARTTLS offered" if tls_context else "no STARTTLS: MDA_TLS_CERT unset",
                     "allowed" if settings.allow_plaintext_auth
                     else "over TLS or from loopback only")
        if implicit_address is not None:
            where = await _bind_managesieve(server, implicit_address, tls=True)
            log.info("listening for ManageSieve over TLS on %s", where)
    except BaseException:
        await server.close(0)
        raise
    return server


async def _bind_managesieve(server: ManageSieveServer, address: ListenAddress, *,
                            tls: bool) -> str:
    """Bind one ManageSieve listener; returns the bound address as text."""
    return await _bind(functools.partial(server.listen, tls=tls), address, "ManageSieve")


async def _bind(listen: Callable[..., Awaitable[tuple[str, int] | str]],
                address: ListenAddress, service: str) -> str:
    """Bind a listener with `listen(host=, port=)` or `listen(path=)` (a stale socket file
    is removed first); returns the bound address as text.

    Raises:
        ListenError: `cannot listen for SERVICE on ADDRESS: reason`.
    """
    try:
        if address.path is not None:
            _remove_stale_socket(address.path)
            return f"unix:{await listen(path=address.path)}"
        host, port = await listen(host=address.host, port=address.port)
    except OSError as exc:
        raise ListenError(f"cannot listen for {service} on {address}: "
                          f"{exc.strerror or exc}") from exc
    return str(ListenAddress(host=host, port=port))


async def start_http(store: Store, settings: Settings) -> HttpServer | None:
    """Start the `/healthz` and `/metrics` listener when `settings.http_listen` is set,
    logging `listening for HTTP on HOST:PORT (/healthz, /metrics)`.

    Returns:
        The running server, or None when `http_listen` is empty.

    Raises:
        ListenError: the address is invalid (named as MDA_HTTP_LISTEN) or cannot be bound.
    """
    text = settings.http_listen.strip()
    if not text:
        return None
    try:
        address = ListenAddress.parse(text)
    except ListenError as exc:
        raise ListenError(f"MDA_HTTP_LISTEN: {exc}") from exc
    server = HttpServer(store)
    where = await _bind(server.listen, address, "HTTP")
    log.info("listening for HTTP on %s (/healthz, /metrics)", where)
    return server


def _unlink_sockets(*texts: str) -> None:
    """Remove the unix-domain socket files of these listen settings, if any."""
    for text in texts:
        if text.strip().startswith("unix:"):
            try:
                os.unlink(ListenAddress.parse(text).path)  # type: ignore[arg-type]
            except (FileNotFoundError, ListenError):
                pass


# Seconds between log lines while shutdown waits for deliveries in flight.
_WAIT_LOG_EVERY = 10.0


async def _wait_for_deliveries(registry: ConnectionRegistry) -> None:
    """Wait until every delivery in flight has ended and its connection closed, logging
    every `_WAIT_LOG_EVERY` seconds. Each delivery is bounded by the store's timeouts."""
    while not await registry.wait_idle(_WAIT_LOG_EVERY):
        log.warning("shutdown: still waiting for %d delivery(ies) in flight and %d "
                    "connection(s)", len(registry.deliveries), len(registry.connections))


async def serve(settings: Settings) -> None:
    """Run the LMTP, ManageSieve and HTTP services until SIGTERM or SIGINT, then shut down
    gracefully.

    The database must be prepared first (`prepare_database`).

    Args:
        settings: the service's settings.

    Raises:
        ListenError: the listen address is invalid or cannot be bound.
        mda.store.errors.StoreUnavailable: the database URL is unusable.
    """
    address = ListenAddress.parse(settings.lmtp_listen)
    store = Store(settings.database_url)
    try:
        deliverer = Deliverer(store, settings)
        registry = ConnectionRegistry()
        handler = DeliveryHandler(deliverer, settings.max_message_size)
        tls_context = server_tls_context(settings)
        server, where = await start_listener(address, registry, handler, settings,
                                             tls_context=tls_context)
        try:
            managesieve = await start_managesieve(store, settings, tls_context)
        except BaseException:
            server.close()
            raise
        try:
            http = await start_http(store, settings)
        except BaseException:
            server.close()
            if managesieve is not None:  # no connection yet: returns at once
                await managesieve.close(settings.shutdown_timeout)
            raise
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info("listening for LMTP on %s (hostname %s, max message size %d bytes, "
                 "database %s, sieve scripts %s)", where, settings.hostname,
                 settings.max_message_size, describe_database(settings.database_url),
                 Path(settings.sieve_scripts_dir).resolve())
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
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        _unlink_sockets(settings.lmtp_listen, settings.managesieve_listen,
                        settings.managesieve_tls_listen, settings.http_listen)
    finally:
        await store.dispose()
    log.info("stopped")
