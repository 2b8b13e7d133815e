"""Message blobs: the bytes of one LMTP transaction, stored once, reference counted.

See `mda.store.messages` for how copies refer to blobs. A blob is created with refcount 0 in
its own short transaction; every stored copy adds a reference in its recipient's
transaction; deleting a copy removes one, and a blob left with none is deleted.

Large blobs are chunked: a blob over `CHUNK_THRESHOLD` bytes keeps an empty `data` column
and its bytes go into `message_blob_chunks`, `CHUNK_SIZE` bytes per row, one INSERT per
chunk binding a `memoryview` slice of the caller's bytes. So storing a 50 MiB message never
makes the driver (aiosqlite/sqlite3, asyncpg) or the database client build a second
50 MiB buffer: at most one chunk is copied at a time. Reading one back (`blob_bytes`)
puts the chunks in order, one at a time, into the one copy the caller gets. Chunks go with
their blob (ON DELETE CASCADE).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mda.buffers import presized_buffer
from mda.store.engine import Store
from mda.store.errors import StoreError
from mda.store.models import MessageBlob, MessageBlobChunk, utcnow

CHUNK_SIZE = 1024 * 1024  # bytes per row of message_blob_chunks
CHUNK_THRESHOLD = CHUNK_SIZE  # blobs longer than this (bytes) are chunked


async def store_blob(session: AsyncSession, data: bytes | memoryview) -> int:
    """Store message bytes as a blob with no references yet.

    Up to `CHUNK_THRESHOLD` bytes go into the blob's row; longer ones are written as
    `CHUNK_SIZE`-byte chunks, one statement per chunk, without copying `data` as a whole.

    Args:
        session: a write session; commit it before the recipients' transactions reference it.
        data: the message bytes (CRLF line endings), or a read-only view of them.

    Returns:
        The blob id.
    """
    view = memoryview(data).cast("B")
    size = view.nbytes
    chunked = size > CHUNK_THRESHOLD
    inline = b"" if chunked else data if isinstance(data, bytes) else bytes(view)
    blob = MessageBlob(data=inline, size=size, refcount=0, created_at=utcnow(),
                       chunked=chunked)
    session.add(blob)
    await session.flush()
    if chunked:
        chunks = MessageBlobChunk.__table__
        for seq, start in enumerate(range(0, size, CHUNK_SIZE)):
            await session.execute(insert(chunks), {
                "blob_id": blob.id, "seq": seq, "data": view[start:start + CHUNK_SIZE]})
    return blob.id


async def blob_bytes(session: AsyncSession, blob_id: int, prefix: bytes = b"") -> bytes:
    """The bytes of a blob, after `prefix`, as one new `bytes` object.

    A chunked blob is read one chunk (one query) at a time into a buffer of the final size
    that becomes the result (`mda.buffers`), so the peak is the result plus one chunk.

    Args:
        session: any session.
        blob_id: the blob.
        prefix: bytes to put first (a message copy's header prefix).

    Returns:
        `prefix` followed by the blob's bytes.

    Raises:
        StoreError: the blob does not exist, or its chunks do not add up to its size.
    """
    row = (await session.execute(
        select(MessageBlob.data, MessageBlob.size, MessageBlob.chunked)
        .where(MessageBlob.id == blob_id))).one_or_none()
    if row is None:
        raise StoreError(f"message blob {blob_id} does not exist")
    data, size, chunked = row
    if not chunked:
        return bytes(prefix) + bytes(data)
    seqs = (await session.execute(
        select(MessageBlobChunk.seq).where(MessageBlobChunk.blob_id == blob_id)
        .order_by(MessageBlobChunk.seq))).scalars().all()
    total = len(prefix) + size
    out = presized_buffer(total)
    out.write(prefix)
    for seq in seqs:
        piece = (await session.execute(select(MessageBlobChunk.data).where(
            MessageBlobChunk.blob_id == blob_id, MessageBlobChunk.seq == seq))).scalar_one()
        if out.tell() + len(piece) > total:
            break
        out.write(piece)
    else:
        if out.tell() == total:
            return out.getvalue()
    raise StoreError(f"message blob {blob_id}: its chunks do not hold its {size} bytes")


async def add_blob_reference(session: AsyncSession, blob_id: int, size: int) -> None:
    """Count one more message copy referring to the blob.

    Args:
        blob_id: the blob.
        size: its size in bytes as the caller knows it: a blob of another size under that
            id (an id reused after the caller's blob was lost) is not referenced.

    Raises:
        StoreError: the blob no longer exists (swept as an orphan), or that id now names
            another blob.
    """
    referenced = (await session.execute(
        update(MessageBlob).where(MessageBlob.id == blob_id, MessageBlob.size == size)
        .values(refcount=MessageBlob.refcount + 1)
        .returning(MessageBlob.id)
        .execution_options(synchronize_session=False))).scalar_one_or_none()
    if referenced is None:
        raise StoreError(f"message blob {blob_id} of {size} bytes no longer exists")


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
