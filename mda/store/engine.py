"""The `Store`: one async engine and the transactions callers frame around store functions.

Callers own transactions (SQLAlchemy "session basics": the code that knows the unit of work
frames it). `store.transaction()` yields an `AsyncSession` in a write transaction that
commits on exit and rolls back on an exception; `store.read()` yields one for reading only.
Store functions take the session and never commit. Use one session per task.

SQLite (the embedded default) is set up so that concurrent writers queue instead of failing
with "database is locked":
- write-ahead logging (readers do not block the writer), `synchronous=FULL` (a committed
  transaction survives a power cut: we answer 250 only after it), foreign keys on;
- write transactions start with `BEGIN IMMEDIATE`, so the write lock is taken up front and
  never upgraded half-way (the upgrade is what deadlocks and fails at once);
- within one process writers also queue on an asyncio lock, and other processes (the CLI
  next to `mda serve`, other `mda serve` processes or workers on the same file) wait up to
  `EngineOptions.busy_timeout` seconds for the file lock.

PostgreSQL connections are pooled (`EngineOptions`: pool size, overflow, how long to wait for
a free connection), checked with a ping when taken from the pool (a connection that died
while idle, e.g. across a server restart, is replaced, so mda recovers without a restart),
and carry the server settings `statement_timeout` and `lock_timeout`; the client gives up on
a statement a little after the server would have (`statement_timeout` +
`CLIENT_TIMEOUT_MARGIN`), so a server or network that stops answering ends in an error, never
in a hang. Every such failure is `StoreUnavailable` (`is_unavailable`), which delivery answers
with 451 4.3.0, its transaction rolled back.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from mda.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

BUSY_TIMEOUT = 30.0  # seconds a SQLite connection waits for another process's write lock
CONNECT_TIMEOUT = 10.0  # seconds to reach PostgreSQL (or get a pooled connection) before 451
CLIENT_TIMEOUT_MARGIN = 2.0  # seconds the client waits beyond the server's statement_timeout
SQLITE_BEGIN_OPTION = "mda_sqlite_begin"  # execution option: BEGIN <value> on SQLite

# SQLSTATEs (PostgreSQL Appendix A) that mean "try again later", not a bug of ours: whole
# classes 08 connection exception, 53 insufficient resources, 57 operator intervention
# (57014 query_canceled = statement_timeout, 57P01 admin_shutdown = pg_terminate_backend or a
# server shutdown, 57P03 cannot_connect_now = still starting), 58 system error; and
# 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available
# (lock_timeout); and, as SQLite's missing file and "no such table", 3D000
# invalid_catalog_name (the database does not exist: not created yet, dropped or renamed) and
# 42P01 undefined_table (its schema is missing: `mda db upgrade` was not run); and the server
# refusing us: class 28 invalid authorization (no such role, wrong password, NOLOGIN) and
# 55000 object_not_in_prerequisite_state ("database ... is not currently accepting
# connections" after ALTER DATABASE ... ALLOW_CONNECTIONS false; mda's own statements never
# raise it otherwise).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "28", "53", "57", "58")
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "55000", "3D000", "42P01"})


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How the engine pools connections and how long it waits (the `MDA_DATABASE_*`
    settings; `mda.config.Settings.engine_options`).

    The defaults suit short-lived callers (the CLI, migrations, tests): no statement
    timeout. Each process has its own pool: N `mda serve` workers hold up to
    N x (`pool_size` + `max_overflow`) connections.

    Attributes:
        pool_size: connections kept open in the pool.
        max_overflow: connections opened beyond `pool_size` under load (closed when
            returned).
        pool_timeout: seconds to wait for a free connection when all are in use, then
            `StoreUnavailable`.
        connect_timeout: seconds to open a PostgreSQL connection.
        statement_timeout: PostgreSQL `statement_timeout` in seconds (the server cancels a
            longer statement, SQLSTATE 57014); the client gives up
            `CLIENT_TIMEOUT_MARGIN` seconds later. 0 = none.
        lock_timeout: PostgreSQL `lock_timeout` in seconds (waiting for one lock, SQLSTATE
            55P03). 0 = none (only `statement_timeout` bounds the wait).
        busy_timeout: seconds a SQLite connection waits for another process's write lock
            before "database is locked".
        application_name: PostgreSQL `application_name`, shown in `pg_stat_activity`.
    """

    pool_size: int = 10
    max_overflow: int = 10
    pool_timeout: float = CONNECT_TIMEOUT
    connect_timeout: float = CONNECT_TIMEOUT
    statement_timeout: float = 0.0
    lock_timeout: float = 0.0
    busy_timeout: float = BUSY_TIMEOUT
    application_name: str = "mda"

    def asyncpg_connect_args(self) -> dict[str, Any]:
        """The `connect_args` for SQLAlchemy's asyncpg dialect: connect timeout, client-side
        command timeout and the server settings (values in milliseconds, as text)."""
        server_settings = {"application_name": self.application_name,
                           "statement_timeout": str(round(self.statement_timeout * 1000)),
                           "lock_timeout": str(round(self.lock_timeout * 1000))}
        return {"timeout": self.connect_timeout,
                "command_timeout": (self.statement_timeout + CLIENT_TIMEOUT_MARGIN
                                    if self.statement_timeout > 0 else None),
                "server_settings": server_settings}


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL, or None for other databases and `:memory:`.

    Args:
        url: a SQLAlchemy URL.

    Returns:
        The file path (relative paths are relative to the current directory), or None.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: str, options: EngineOptions | None = None, *,
                  create: bool = True) -> AsyncEngine:
    """Create mda's async engine for `url` with the set-up described above.

    Args:
        url: SQLAlchemy async URL (`sqlite+aiosqlite:///path`, `postgresql+asyncpg://...`).
        options: pool and timeout settings; None = `EngineOptions()`.
        create: whether connecting may create a missing SQLite file (migrations do); with
            False a connection to a file that is gone fails (SQLite `mode=rw`) instead of
            leaving the pool holding a new, empty database.

    Returns:
        The engine; no connection is made yet.

    Raises:
        StoreUnavailable: the URL cannot be parsed or names a driver that is not installed.
    """
    options = options or EngineOptions()
    pool = {"pool_size": options.pool_size, "max_overflow": options.max_overflow,
            "pool_timeout": options.pool_timeout}
    try:
        parsed = make_url(url)
        path = sqlite_path(parsed)
        if path is not None and not create:
            parsed = parsed.set(database=f"file:{quote(str(path))}",
                                query={**parsed.query, "mode": "rw", "uri": "true"})
        if parsed.get_backend_name() == "sqlite":
            engine = create_async_engine(
                parsed, connect_args={"timeout": options.busy_timeout}, **pool)
            _configure_sqlite(engine, options.busy_timeout)
        else:
            connect_args: dict[str, Any] = {}
            if parsed.get_driver_name() == "asyncpg":
                connect_args = options.asyncpg_connect_args()
                parsed = _libpq_sslmode_as_ssl(parsed)
            engine = create_async_engine(parsed, pool_pre_ping=True, connect_args=connect_args,
                                         **pool)
            event.listen(engine.sync_engine, "handle_error", _discard_timed_out_connection)
            _name_connect_timeouts(engine, parsed, options.connect_timeout)
    except Exception as exc:  # ArgumentError, NoSuchModuleError, ImportError
        raise StoreUnavailable(f"cannot use database URL {safe_url(url)}: {exc}") from exc
    return engine


def _libpq_sslmode_as_ssl(url: URL) -> URL:
    """libpq's `sslmode=MODE` query parameter as asyncpg's `ssl=MODE` (asyncpg's connect()
    takes the same modes, disable ... verify-full, but not the name `sslmode`)."""
    if "sslmode" not in url.query:
        return url
    query = dict(url.query)
    mode = query.pop("sslmode")
    query.setdefault("ssl", mode)
    return url.set(query=query)


def server_description(url: str | URL) -> str:
    """Where a database URL points, for error messages: `HOST:PORT/DATABASE` for a server
    (the port PostgreSQL's default 5432 when the URL gives none), the file for SQLite.

    Args:
        url: a SQLAlchemy URL (need not be valid).

    Returns:
        The description; the URL without its password when it cannot be parsed further.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:
        return safe_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(sqlite_path(parsed) or parsed.database or ":memory:")
    port = parsed.port or (5432 if parsed.get_backend_name() == "postgresql" else None)
    host = parsed.host or parsed.query.get("host") or "localhost"
    return f"{host}{f':{port}' if port else ''}/{parsed.database or ''}"


def _name_connect_timeouts(engine: AsyncEngine, url: URL, timeout: float) -> None:
    """Make a connection attempt that runs out of `timeout` say so: asyncpg raises a bare
    TimeoutError, which would reach the log as just "TimeoutError"."""
    where = server_description(url)

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect, connection_record, cargs, cparams):
        try:
            return dialect.connect(*cargs, **cparams)
        except (TimeoutError, asyncio.TimeoutError) as exc:
            raise TimeoutError(f"no connection to {where} within {timeout:g} s "
                               f"(MDA_DATABASE_CONNECT_TIMEOUT)") from exc


def _discard_timed_out_connection(context: ExceptionContext) -> None:
    """A connection whose statement ran out of the client's time is in an unknown state
    (the answer may still come, or never): have the pool close it rather than reuse it."""
    if isinstance(context.original_exception, (TimeoutError, asyncio.TimeoutError)):
        context.is_disconnect = True


def _configure_sqlite(engine: AsyncEngine, busy_timeout: float) -> None:
    """Install the WAL / busy-timeout / BEGIN IMMEDIATE hooks on a SQLite engine."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, connection_record) -> None:
        # Take BEGIN away from the sqlite3 module; the "begin" hook below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(SQLITE_BEGIN_OPTION, '')}")


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages and logs.

    Args:
        url: a SQLAlchemy URL (need not be valid).

    Returns:
        The URL as text with the password masked, or `<unparseable URL>`.
    """
    try:
        return (make_url(url) if isinstance(url, str) else url).render_as_string(
            hide_password=True)
    except Exception:
        return "<unparseable URL>"


def is_unavailable(exc: BaseException) -> bool:
    """Whether an exception means the database cannot be used (rather than a bug of ours).

    Args:
        exc: an exception raised while talking to the database.

    Returns:
        True for connection failures, timeouts (the client's, no free pooled connection
        within the pool timeout, and PostgreSQL's statement_timeout and lock_timeout),
        locks, deadlocks, a server shutting down or terminating the connection, and other
        operational errors.
    """
    if isinstance(exc, (OperationalError, InterfaceError, OSError, ConnectionError,
                        asyncio.TimeoutError, PoolTimeout)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None) \
        or getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (sqlstate in _TRANSIENT_SQLSTATES
                                      or sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES)):
        return True
    # asyncpg raises its own connection errors outside the DBAPI wrapper at connect time.
    module = type(exc).__module__
    return module.startswith("asyncpg") and "Connection" in type(exc).__name__


def error_reason(exc: BaseException) -> str:
    """The driver's own message of a database exception (without SQLAlchemy's SQL dump)."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc) or type(exc).__name__


class Store:
    """mda's database: an async engine plus transaction helpers.

    Args:
        url: SQLAlchemy async URL.
        options: pool and timeout settings; None = `EngineOptions()` (no statement timeout).

    Raises:
        StoreUnavailable: the URL is unusable (see `create_engine`).
    """

    def __init__(self, url: str, options: EngineOptions | None = None) -> None:
        self.url = url
        self.options = options or EngineOptions()
        self.engine = create_engine(url, self.options, create=False)
        self.dialect = self.engine.dialect.name
        self._sqlite_file = sqlite_path(url)
        write_engine = self.engine
        if self.dialect == "sqlite":
            write_engine = self.engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        self._write_sessions = async_sessionmaker(write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock: asyncio.Lock | None = None

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite store."""
        return self.dialect == "sqlite"

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.dispose()

    def _check_file(self) -> None:
        if self._sqlite_file is not None and not self._sqlite_file.exists():
            raise StoreUnavailable(
                f"database file {self._sqlite_file} does not exist (run `mda db upgrade`)")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: commits when the block ends, rolls back on an exception.

        On SQLite it starts with BEGIN IMMEDIATE and, within this process, waits its turn on
        an asyncio lock. When the block exits normally the commit is durable.

        Yields:
            An AsyncSession to pass to store functions (use it in this task only).

        Raises:
            StoreUnavailable: the database cannot be reached or used; nothing was written.
            Any exception raised inside the block, after rolling back.
        """
        self._check_file()
        if self.is_sqlite:
            if self._write_lock is None:
                self._write_lock = asyncio.Lock()
            async with self._write_lock:
                async with self._session(self._write_sessions, commit=True) as session:
                    yield session
        else:
            async with self._session(self._write_sessions, commit=True) as session:
                yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only transaction (rolled back at the end); never blocks SQLite writers.

        Yields:
            An AsyncSession for reading.

        Raises:
            StoreUnavailable: the database cannot be reached or used.
        """
        self._check_file()
        async with self._session(self._read_sessions, commit=False) as session:
            yield session

    @asynccontextmanager
    async def _session(self, factory: async_sessionmaker[AsyncSession],
                       *, commit: bool) -> AsyncIterator[AsyncSession]:
        try:
            async with factory() as session:
                if commit:
                    async with session.begin():
                        yield session
                else:
                    try:
                        yield session
                    finally:
                        # Detach first: a rollback expires every object in the session, and
                        # the caller keeps using what it read.
                        session.expunge_all()
                        await session.rollback()
        except StoreUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(self._unavailable_message(exc)) from exc
            raise

    def _unavailable_message(self, exc: BaseException) -> str:
        """`database unavailable: REASON (WHERE)` for an exception `is_unavailable` accepts:
        the driver's reason, what to do about a missing schema, which timeout a bare
        TimeoutError ran out of, and the server and database (or file) concerned."""
        reason = error_reason(exc)
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if sqlstate == "42P01" or reason.startswith("no such table"):
            reason += " (run `mda db upgrade`)"
        elif reason in ("TimeoutError", "") and not isinstance(exc, PoolTimeout):
            timeout = self.options.statement_timeout
            reason = (f"no answer within {timeout + CLIENT_TIMEOUT_MARGIN:g} s "
                      f"(MDA_DATABASE_STATEMENT_TIMEOUT + {CLIENT_TIMEOUT_MARGIN:g} s)"
                      if timeout > 0 else "the database did not answer in time")
        where = server_description(self.url)
        return f"database unavailable: {reason}" + ("" if where in reason else f" ({where})")


def ensure_sqlite_directory(url: str) -> None:
    """Create the parent directory of a SQLite database file if it is missing.

    Args:
        url: a SQLAlchemy URL; other databases are left alone.

    Raises:
        StoreUnavailable: the directory cannot be created.
    """
    path = sqlite_path(url)
    if path is None:
        return
    try:
        os.makedirs(path.parent or ".", exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create directory {path.parent}: {exc}") from exc
