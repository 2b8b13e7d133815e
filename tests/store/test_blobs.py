"""Chunked blobs: a blob over CHUNK_THRESHOLD bytes is stored as CHUNK_SIZE-byte rows of
message_blob_chunks, read back whole, listed from its first chunk, and deleted with its
chunks (by the last copy's delete, a user's delete and the orphan sweep)."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mda.store import (
    Store,
    delete_message,
    delete_user,
    list_messages,
    message_bytes,
)
from mda.store.blobs import (
    CHUNK_SIZE,
    CHUNK_THRESHOLD,
    blob_bytes,
    store_blob,
    sweep_orphan_blobs,
)
from mda.store.errors import StoreError
from mda.store.models import MessageBlob, MessageBlobChunk
from tests.store.conftest import new_blob, new_user
from tests.store.test_messages import append, assert_counters_match_messages

HEAD = b"From: Ann <ann@example.org>\r\nSubject: =?utf-8?q?gro=C3=9F?=\r\n\r\n"


def message_of(size: int) -> bytes:
    """A message of exactly `size` bytes (>= len(HEAD)): HEAD, then random bytes."""
    return HEAD + os.urandom(size - len(HEAD))


async def chunk_rows(store: Store, blob_id: int | None = None) -> list[tuple[int, int, int]]:
    """(blob_id, seq, length) of the stored chunks, of one blob or of all."""
    query = select(MessageBlobChunk.blob_id, MessageBlobChunk.seq,
                   func.length(MessageBlobChunk.data)).order_by(MessageBlobChunk.blob_id,
                                                               MessageBlobChunk.seq)
    if blob_id is not None:
        query = query.where(MessageBlobChunk.blob_id == blob_id)
    async with store.read() as session:
        return [tuple(row) for row in (await session.execute(query)).all()]


async def blob_row(store: Store, blob_id: int) -> tuple[int, int, bool]:
    """(length of the data column, size, chunked) of a blob."""
    async with store.read() as session:
        return tuple((await session.execute(
            select(func.length(MessageBlob.data), MessageBlob.size, MessageBlob.chunked)
            .where(MessageBlob.id == blob_id))).one())


def test_the_threshold_is_one_chunk() -> None:
    assert CHUNK_THRESHOLD == CHUNK_SIZE == 1024 * 1024


@pytest.mark.parametrize("size, chunks", [
    (0, []),
    (CHUNK_THRESHOLD - 1, []),
    (CHUNK_THRESHOLD, []),
    (CHUNK_THRESHOLD + 1, [CHUNK_SIZE, 1]),
    (3 * CHUNK_SIZE, [CHUNK_SIZE] * 3),
    (3 * CHUNK_SIZE + 12345, [CHUNK_SIZE] * 3 + [12345]),
])
async def test_round_trip_at_the_threshold(store: Store, size: int, chunks: list[int]) -> None:
    data = message_of(size) if size else b""
    blob = await new_blob(store, data)
    assert await chunk_rows(store, blob) == [(blob, seq, n) for seq, n in enumerate(chunks)]
    assert await blob_row(store, blob) == ((0, size, True) if chunks else (size, size, False))
    async with store.read() as session:
        back = await blob_bytes(session, blob, b"Delivered-To: x\r\n")
    assert back == b"Delivered-To: x\r\n" + data


async def test_a_memoryview_is_stored_like_bytes(store: Store) -> None:
    data = message_of(2 * CHUNK_SIZE + 7)
    async with store.transaction() as session:
        blob = await store_blob(session, memoryview(data))
    assert [n for _, _, n in await chunk_rows(store, blob)] == [CHUNK_SIZE, CHUNK_SIZE, 7]
    async with store.read() as session:
        assert await blob_bytes(session, blob) == data


async def test_a_chunked_message_reads_back_and_lists_its_subject_and_sender(
        store: Store) -> None:
    joe = await new_user(store)
    data = message_of(5 * CHUNK_SIZE // 2)
    small = await new_blob(store, HEAD + b"small\r\n")
    large = await new_blob(store, data)
    await append(store, joe, small, blob_size=len(HEAD) + 7)
    await append(store, joe, large, blob_size=len(data), prefix=b"Delivered-To: joe\r\n")
    async with store.read() as session:
        stored = await message_bytes(session, joe.id, "INBOX", 2)
        infos = await list_messages(session, joe.id)
    assert hashlib.sha256(stored).digest() == hashlib.sha256(
        b"Delivered-To: joe\r\n" + data).digest()
    assert [(m.uid, m.size, m.subject, m.sender) for m in infos] == [
        (1, len(HEAD) + 7 + 17, "groß", "Ann <ann@example.org>"),
        (2, len(data) + 19, "groß", "Ann <ann@example.org>")]
    await assert_counters_match_messages(store)


async def test_deleting_the_last_copy_deletes_the_chunks(store: Store) -> None:
    joe = await new_user(store)
    data = message_of(2 * CHUNK_SIZE + 1)
    blob = await new_blob(store, data)
    other = await new_blob(store, message_of(CHUNK_SIZE + 1))
    await append(store, joe, blob, blob_size=len(data))
    await append(store, joe, blob, blob_size=len(data), mailbox="Archive")
    await append(store, joe, other, blob_size=CHUNK_SIZE + 1)
    async with store.transaction() as session:
        await delete_message(session, joe.id, "INBOX", 1)
    assert len(await chunk_rows(store, blob)) == 3  # one copy left
    async with store.transaction() as session:
        await delete_message(session, joe.id, "Archive", 1)
    assert await chunk_rows(store, blob) == []
    assert len(await chunk_rows(store, other)) == 2
    async with store.transaction() as session:
        await delete_user(session, joe.address)
    assert await chunk_rows(store) == []
    async with store.read() as session:
        assert (await session.execute(select(func.count(MessageBlob.id)))).scalar_one() == 0


async def test_the_orphan_sweep_deletes_the_chunks(store: Store) -> None:
    joe = await new_user(store)
    used = await new_blob(store, message_of(CHUNK_SIZE + 1))
    orphan = await new_blob(store, message_of(3 * CHUNK_SIZE))
    await append(store, joe, used, blob_size=CHUNK_SIZE + 1)
    assert await sweep_orphan_blobs(store) == 0  # too young
    assert len(await chunk_rows(store, orphan)) == 3
    assert await sweep_orphan_blobs(store, timedelta(seconds=-1)) == 1
    assert await chunk_rows(store, orphan) == []
    assert len(await chunk_rows(store, used)) == 2


async def test_a_blob_whose_chunks_are_missing_is_an_error_not_short_mail(store: Store) -> None:
    blob = await new_blob(store, message_of(2 * CHUNK_SIZE + 1))
    async with store.transaction() as session:
        await session.execute(MessageBlobChunk.__table__.delete().where(
            MessageBlobChunk.blob_id == blob, MessageBlobChunk.seq == 1))
    async with store.read() as session:
        with pytest.raises(StoreError, match="do not hold its 2097153 bytes"):
            await blob_bytes(session, blob)
        with pytest.raises(StoreError, match="does not exist"):
            await blob_bytes(session, blob + 1000)


async def test_a_blob_with_a_chunk_too_many_is_an_error(store: Store) -> None:
    blob = await new_blob(store, message_of(CHUNK_SIZE + 1))
    async with store.transaction() as session:
        await session.execute(MessageBlobChunk.__table__.insert().values(
            blob_id=blob, seq=2, data=b"extra"))
    async with store.read() as session:
        with pytest.raises(StoreError, match="do not hold its 1048577 bytes"):
            await blob_bytes(session, blob)
