"""The transaction's shared message blob after a commit that failed.

A blob id handed out inside a transaction whose COMMIT then failed names no blob, and SQLite
(INTEGER PRIMARY KEY without AUTOINCREMENT) gives that id to the next blob any connection
stores: holding on to it filed another transaction's message into later recipients'
mailboxes. These tests make SQLite's COMMIT itself fail (a foreign-key violation whose
check `PRAGMA defer_foreign_keys` moves to COMMIT) and check that the id is not kept and
that a reference by a stale id is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from mda.delivery.deliverer import _SharedBlob
from mda.store import Store
from mda.store.blobs import add_blob_reference, blob_bytes
from mda.store.errors import StoreError
from tests.store.conftest import new_blob, sqlite_store  # noqa: F401 (fixture)

OURS = b"Subject: big transaction\r\n\r\n" + b"x" * 1000 + b"\r\n"
THEIRS = b"Subject: someone else\r\n\r\nhello\r\n"


class CommitFails:
    """A store whose write transactions do their work and then fail at COMMIT."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.store.transaction() as session:
            await session.execute(text("PRAGMA defer_foreign_keys = ON"))
            await session.execute(text(
                "INSERT INTO sieve_errors (user_id, occurred_at, kind, message) "
                "VALUES (987654321, CURRENT_TIMESTAMP, 'runtime', 'no such user')"))
            yield session


async def test_a_failed_commit_leaves_no_blob_id_behind(sqlite_store: Store) -> None:
    blob = _SharedBlob(CommitFails(sqlite_store), OURS)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="FOREIGN KEY"):
        await blob.ensure()
    assert blob.id is None

    theirs = await new_blob(sqlite_store, THEIRS)  # SQLite hands out the lost id again
    blob.store = sqlite_store
    ours = await blob.ensure()
    assert ours != theirs
    async with sqlite_store.read() as session:
        assert await blob_bytes(session, ours) == OURS
        assert await blob_bytes(session, theirs) == THEIRS


async def test_a_reference_by_an_id_that_names_another_blob_is_refused(
        sqlite_store: Store) -> None:
    theirs = await new_blob(sqlite_store, THEIRS)
    with pytest.raises(StoreError, match="no longer exists"):
        async with sqlite_store.transaction() as session:
            await add_blob_reference(session, theirs, len(OURS))
    async with sqlite_store.transaction() as session:
        await add_blob_reference(session, theirs, len(THEIRS))
