"""Message blobs: the bytes of one LMTP transaction, stored once, reference counted.

See `mda.store.messages` for how copies refer to blobs. A blob is created with refcount 0 in
its own short transaction; every stored copy adds a reference in its recipient's
transaction; deleting a copy removes one, and a blob left with none is deleted.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from mda.store.engine import Store
from mda.store.errors import StoreError
from mda.store.models import MessageBlob, utcnow


async def store_blob(session: AsyncSession, data: bytes) -> int:
    """Store message bytes as a blob with no references yet.

    Args:
        session: a write session; commit it before the recipients' transactions reference it.
        data: the message bytes (CRLF line endings).

    Returns:
        The blob id.
    """
    blob = MessageBlob(data=data, size=len(data), refcount=0, created_at=utcnow())
    session.add(blob)
    await session.flush()
    return blob.id


async def add_blob_reference(session: AsyncSession, blob_id: int) -> None:
    """Count one more message copy referring to the blob.

    Raises:
        StoreError: the blob no longer exists (swept as an orphan).
    """
    referenced = (await session.execute(
        update(MessageBlob).where(MessageBlob.id == blob_id)
        .values(refcount=MessageBlob.refcount + 1)
        .returning(MessageBlob.id)
        .execution_options(synchronize_session=False))).scalar_one_or_none()
    if referenced is None:
        raise StoreError(f"message blob {blob_id} no longer exists")


async def drop_blob_if_unreferenced(session: AsyncSession, blob_id: int) -> bool:
    """Delete the blob if no message refers to it.

    Returns:
        True when it was deleted.
    """
    result = await session.execute(
        delete(MessageBlob).where(MessageBlob.id == blob_id, MessageBlob.refcount <= 0))
    return bool(result.rowcount)


async def delete_orphan_blobs(session: AsyncSession, older_than: timedelta) -> int:
    """Delete blobs without references that were created more than `older_than` ago.

    Args:
        session: a write session.
        older_than: minimum age; keep it well above the longest delivery so that a blob
            another instance is still delivering is not taken away.

    Returns:
        The number of blobs deleted.
    """
    result = await session.execute(
        delete(MessageBlob).where(MessageBlob.refcount <= 0,
                                  MessageBlob.created_at < utcnow() - older_than))
    return int(result.rowcount or 0)


async def release_blob(session: AsyncSession, blob_id: int, references: int = 1) -> None:
    """Remove `references` references from a blob and delete it when none are left."""
    await session.execute(
        update(MessageBlob).where(MessageBlob.id == blob_id)
        .values(refcount=MessageBlob.refcount - references)
        .execution_options(synchronize_session=False))
    await drop_blob_if_unreferenced(session, blob_id)


ORPHAN_AGE = timedelta(hours=1)


async def sweep_orphan_blobs(store: Store, older_than: timedelta = ORPHAN_AGE) -> int:
    """Delete unreferenced blobs older than `older_than` in their own transaction.

    For `mda serve` at start (and periodically): a blob is left without references when
    the process stopped between storing it and committing any recipient's copy. The age
    threshold keeps blobs of deliveries other instances still have in flight.

    Args:
        store: the store.
        older_than: minimum age of a blob to delete.

    Returns:
        How many blobs were deleted.

    Raises:
        StoreUnavailable: the database cannot be used.
    """
    async with store.transaction() as session:
        return await delete_orphan_blobs(session, older_than)
