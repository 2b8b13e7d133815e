"""Stored messages: shared blobs, reference counts, UIDs, quota on append and delete."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mda.store import (
    DEFAULT_SPECIAL_MAILBOXES,
    MailboxExists,
    MailboxNotFound,
    MessageNotFound,
    QuotaExceeded,
    Store,
    append_message,
    create_mailbox,
    delete_message,
    delete_user,
    ensure_mailbox,
    get_mailbox,
    get_user,
    list_mailboxes,
    list_messages,
    mailbox_names,
    message_bytes,
)
from mda.store.blobs import delete_orphan_blobs, drop_blob_if_unreferenced, sweep_orphan_blobs
from mda.store.models import Mailbox, Message, MessageBlob, User
from tests.store.conftest import NOW, new_blob, new_user

BODY = b"From: Ann <ann@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nHello\r\n"


async def append(store: Store, user: User, blob_id: int, *, mailbox: str = "INBOX",
                 prefix: bytes = b"Delivered-To: x\r\n", flags: frozenset[str] = frozenset(),
                 blob_size: int = len(BODY)):
    async with store.transaction() as session:
        box = await ensure_mailbox(session, user.id, mailbox)
        return await append_message(session, user_id=user.id, mailbox=box, blob_id=blob_id,
                                    blob_size=blob_size, header_prefix=prefix, flags=flags,
                                    internal_date=NOW)


async def blob_refcounts(store: Store) -> dict[int, int]:
    async with store.read() as session:
        return dict((await session.execute(
            select(MessageBlob.id, MessageBlob.refcount))).all())


async def assert_counters_match_messages(store: Store) -> None:
    """The invariant of DESIGN.md: usage counters equal the sums over stored messages."""
    async with store.read() as session:
        for user in (await session.execute(select(User))).scalars():
            count, total = (await session.execute(
                select(func.count(Message.id), func.coalesce(func.sum(Message.size), 0))
                .join(Mailbox, Message.mailbox_id == Mailbox.id)
                .where(Mailbox.user_id == user.id))).one()
            assert (user.messages_used, user.storage_used) == (count, total), user.address


async def test_copies_share_one_blob_and_keep_their_own_prefix(store: Store) -> None:
    joe = await new_user(store, "joe@example.com")
    ann = await new_user(store, "ann@example.com")
    blob = await new_blob(store, BODY)
    first = await append(store, joe, blob, prefix=b"Delivered-To: joe@example.com\r\n")
    second = await append(store, ann, blob, prefix=b"Delivered-To: ann@example.com\r\n",
                          mailbox="Lists/python")
    assert (first.mailbox, first.uid, first.size) == ("INBOX", 1, 31 + len(BODY))
    assert (second.mailbox, second.uid) == ("Lists/python", 1)
    assert await blob_refcounts(store) == {blob: 2}
    async with store.read() as session:
        stored = await message_bytes(session, ann.id, "Lists/python", 1)
        joe_stored = await message_bytes(session, joe.id, "inbox", 1)
    assert stored == b"Delivered-To: ann@example.com\r\n" + BODY
    assert joe_stored == b"Delivered-To: joe@example.com\r\n" + BODY
    await assert_counters_match_messages(store)


async def test_listing_shows_decoded_subject_and_sender_and_flags(store: Store) -> None:
    joe = await new_user(store)
    blob = await new_blob(store, BODY)
    await append(store, joe, blob, flags=frozenset({"\\Seen", "$label1"}))
    await append(store, joe, blob, mailbox="Archive")
    async with store.read() as session:
        messages = await list_messages(session, joe.id)
        archive = await list_messages(session, joe.id, "Archive")
        boxes = await list_mailboxes(session, joe.id)
    assert [(m.mailbox, m.uid, m.flags, m.subject, m.sender) for m in messages] == [
        ("INBOX", 1, ("$label1", "\\Seen"), "Grüße", "Ann <ann@example.org>"),
        ("Archive", 1, (), "Grüße", "Ann <ann@example.org>"),
    ]
    assert [m.mailbox for m in archive] == ["Archive"]
    size = len(BODY) + len(b"Delivered-To: x\r\n")
    assert [(b.name, b.messages, b.bytes) for b in boxes if b.messages] == [
        ("INBOX", 1, size), ("Archive", 1, size)]


async def test_a_message_without_headers_lists_with_empty_fields(store: Store) -> None:
    joe = await new_user(store)
    blob = await new_blob(store, b"\x00\xff just bytes\r\n")
    await append(store, joe, blob, prefix=b"", blob_size=15)
    async with store.read() as session:
        [info] = await list_messages(session, joe.id)
    assert (info.subject, info.sender) == ("", "")


async def test_concurrent_appends_get_distinct_ascending_uids(store: Store) -> None:
    joe = await new_user(store)
    blob = await new_blob(store, BODY)
    stored = await asyncio.gather(*(append(store, joe, blob) for _ in range(30)))
    assert sorted(s.uid for s in stored) == list(range(1, 31))
    assert await blob_refcounts(store) == {blob: 30}
    async with store.read() as session:
        box = await get_mailbox(session, joe.id, "INBOX")
    assert box.uidnext == 31
    await assert_counters_match_messages(store)


async def test_concurrent_appends_near_the_limit_stop_exactly_at_it(store: Store) -> None:
    prefix = b"Delivered-To: joe@example.com\r\n"
    size = len(prefix) + len(BODY)
    joe = await new_user(store, storage_limit=size * 7 + size // 2)
    blob = await new_blob(store, BODY)

    async def try_append() -> bool:
        try:
            await append(store, joe, blob, prefix=prefix)
            return True
        except QuotaExceeded:
            return False

    results = await asyncio.gather(*(try_append() for _ in range(25)))
    assert results.count(True) == 7
    async with store.read() as session:
        user = await get_user(session, joe.address)
    assert (user.storage_used, user.messages_used) == (7 * size, 7)
    assert await blob_refcounts(store) == {blob: 7}
    await assert_counters_match_messages(store)


async def test_over_quota_append_leaves_nothing_behind(store: Store) -> None:
    joe = await new_user(store, storage_limit=10)
    blob = await new_blob(store, BODY)
    with pytest.raises(QuotaExceeded):
        await append(store, joe, blob)
    async with store.read() as session:
        assert await list_messages(session, joe.id) == []
        assert (await get_mailbox(session, joe.id, "INBOX")).uidnext == 1
    assert await blob_refcounts(store) == {blob: 0}


async def test_delete_frees_quota_and_drops_the_last_reference(store: Store) -> None:
    joe = await new_user(store)
    blob = await new_blob(store, BODY)
    await append(store, joe, blob)
    await append(store, joe, blob)
    async with store.transaction() as session:
        freed = await delete_message(session, joe.id, "INBOX", 1)
    assert freed == len(BODY) + 17
    assert await blob_refcounts(store) == {blob: 1}
    await assert_counters_match_messages(store)
    async with store.transaction() as session:
        await delete_message(session, joe.id, "INBOX", 2)
    assert await blob_refcounts(store) == {}
    async with store.read() as session:
        user = await get_user(session, joe.address)
        assert (user.storage_used, user.messages_used) == (0, 0)
        with pytest.raises(MessageNotFound):
            await message_bytes(session, joe.id, "INBOX", 2)
        with pytest.raises(MailboxNotFound):
            await message_bytes(session, joe.id, "Nope", 1)


async def test_uids_are_not_reused_after_delete(store: Store) -> None:
    joe = await new_user(store)
    blob = await new_blob(store, BODY)
    await append(store, joe, blob)
    async with store.transaction() as session:
        await delete_message(session, joe.id, "INBOX", 1)
    blob = await new_blob(store, BODY)
    assert (await append(store, joe, blob)).uid == 2


async def test_deleting_a_user_keeps_blobs_other_users_still_use(store: Store) -> None:
    joe = await new_user(store, "joe@example.com")
    ann = await new_user(store, "ann@example.com")
    shared = await new_blob(store, BODY)
    own = await new_blob(store, b"Subject: own\r\n\r\n")
    await append(store, joe, shared)
    await append(store, joe, shared, mailbox="Archive")
    await append(store, joe, own, blob_size=16)
    await append(store, ann, shared)
    async with store.transaction() as session:
        await delete_user(session, "joe@example.com")
    assert await blob_refcounts(store) == {shared: 1}
    await assert_counters_match_messages(store)


async def test_orphan_blobs_are_swept(store: Store) -> None:
    joe = await new_user(store)
    used = await new_blob(store, BODY)
    orphan = await new_blob(store, BODY)
    await append(store, joe, used)
    async with store.transaction() as session:
        assert await delete_orphan_blobs(session, timedelta(hours=1)) == 0  # too young
        assert not await drop_blob_if_unreferenced(session, used)
    assert await sweep_orphan_blobs(store) == 0
    assert await sweep_orphan_blobs(store, timedelta(seconds=-1)) == 1
    assert await blob_refcounts(store) == {used: 1}
    assert orphan not in await blob_refcounts(store)


async def test_mailbox_creation(store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        box = await create_mailbox(session, joe.id, "Archive/2024")
        assert box.uidnext == 1 and box.uidvalidity > 0
        with pytest.raises(MailboxExists):
            await create_mailbox(session, joe.id, "inbox")
        again = await ensure_mailbox(session, joe.id, "Archive/2024")
        assert again.id == box.id
        assert await mailbox_names(session, joe.id) == {
            "INBOX", "Archive/2024", *(name for name, _ in DEFAULT_SPECIAL_MAILBOXES)}
