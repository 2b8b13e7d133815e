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
  next to `mda serve`) wait up to `busy_timeout` seconds for the file lock.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from mda.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

BUSY_TIMEOUT = 30.0  # seconds a SQLite connection waits for another process's write lock
CONNECT_TIMEOUT = 10.0  # seconds to reach PostgreSQL (or get a pooled connection) before 451
_BEGIN_OPTION = "mda_sqlite_begin"


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


def create_engine(url: str) -> AsyncEngine:
    """Create mda's async engine for `url` with the SQLite set-up described above.

    Args:
        url: SQLAlchemy async URL (`sqlite+aiosqlite:///path`, `postgresql+asyncpg://...`).

    Returns:
        The engine; no connection is made yet.

    Raises:
        StoreUnavailable: the URL cannot be parsed or names a driver that is not installed.
    """
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = create_async_engine(
                parsed, connect_args={"timeout": BUSY_TIMEOUT}, pool_size=8, max_overflow=8)
            _configure_sqlite(engine)
        else:
            connect_args = {"timeout": CONNECT_TIMEOUT} if parsed.get_driver_name() == "asyncpg" \
                else {}
            engine = create_async_engine(parsed, pool_pre_ping=True, pool_size=10,
                                         max_overflow=10, pool_timeout=CONNECT_TIMEOUT,
                                         connect_args=connect_args)
    except Exception as exc:  # ArgumentError, NoSuchModuleError, ImportError
        raise StoreUnavailable(f"cannot use database URL {safe_url(url)}: {exc}") from exc
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Install the WAL / busy-timeout / BEGIN IMMEDIATE hooks on a SQLite engine."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, connection_record) -> None:
        # Take BEGIN away from the sqlite3 module; the "begin" hook below emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_BEGIN_OPTION, '')}")


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
        True for connection failures, timeouts, locks and other operational errors.
    """
    if isinstance(exc, (OperationalError, InterfaceError, OSError, ConnectionError,
                        asyncio.TimeoutError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
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

    Raises:
        StoreUnavailable: the URL is unusable (see `create_engine`).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.dialect = self.engine.dialect.name
        self._sqlite_file = sqlite_path(url)
        write_engine = self.engine
        if self.dialect == "sqlite":
            write_engine = self.engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
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
                raise StoreUnavailable(f"database unavailable: {error_reason(exc)}") from exc
            raise


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
