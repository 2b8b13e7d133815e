"""Store fixtures: a migrated `Store` on a real SQLite file and on a real PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from mda.store import Store, User, add_user
from mda.store.blobs import store_blob
from mda.store.migrate import upgrade_async


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """URL of a fresh, empty database: a SQLite file, then a PostgreSQL database."""
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A Store on a freshly migrated database, once per backend."""
    await upgrade_async(db_url)
    async with Store(db_url) as s:
        yield s


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    """A Store on a freshly migrated SQLite file only."""
    await upgrade_async(sqlite_url)
    async with Store(sqlite_url) as s:
        yield s


async def new_user(store: Store, address: str = "joe@example.com", **limits: int | None) -> User:
    """Add a user in its own transaction."""
    async with store.transaction() as session:
        return await add_user(session, address, **limits)


async def new_blob(store: Store, data: bytes = b"Subject: hi\r\n\r\nbody\r\n") -> int:
    """Store a blob in its own transaction, as delivery does."""
    async with store.transaction() as session:
        return await store_blob(session, data)


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
