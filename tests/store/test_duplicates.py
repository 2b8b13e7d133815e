"""Sieve duplicate-tracking records (RFC 7352 §3) and special-use mailboxes, on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mda.store import (
    InvalidInput,
    Store,
    create_mailbox,
    delete_user,
    duplicate_seen,
    ensure_mailbox,
    mailbox_special_uses,
    record_duplicates,
)
from mda.store.models import SieveDuplicate
from tests.store.conftest import NOW, new_user

KEY_A, KEY_B = "a" * 64, "b" * 64


async def seen(store: Store, user_id: int, key: str, now=NOW) -> bool:
    async with store.read() as session:
        return await duplicate_seen(session, user_id, key, now)


async def row_count(store: Store) -> int:
    async with store.read() as session:
        return (await session.execute(select(func.count(SieveDuplicate.id)))).scalar_one()


async def test_a_record_is_seen_until_it_expires(store: Store) -> None:
    joe = await new_user(store)
    ann = await new_user(store, "ann@example.com")
    assert not await seen(store, joe.id, KEY_A)
    async with store.transaction() as session:
        assert await record_duplicates(session, joe.id, [(KEY_A, NOW + timedelta(hours=1))],
                                       NOW) == 1
    assert await seen(store, joe.id, KEY_A)
    assert await seen(store, joe.id, KEY_A, NOW + timedelta(minutes=59))
    assert not await seen(store, joe.id, KEY_A, NOW + timedelta(hours=1))
    assert not await seen(store, ann.id, KEY_A)  # per user
    assert not await seen(store, joe.id, KEY_B)


async def test_recording_again_renews_the_expiry(store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        await record_duplicates(session, joe.id, [(KEY_A, NOW + timedelta(hours=1))], NOW)
    later = NOW + timedelta(minutes=30)
    async with store.transaction() as session:
        await record_duplicates(session, joe.id, [(KEY_A, later + timedelta(hours=1)),
                                                  (KEY_A, later)], later)
    assert await seen(store, joe.id, KEY_A, NOW + timedelta(minutes=80))
    assert await row_count(store) == 1


async def test_expired_records_of_the_user_are_purged(store: Store) -> None:
    joe = await new_user(store)
    ann = await new_user(store, "ann@example.com")
    for user in (joe, ann):
        async with store.transaction() as session:
            await record_duplicates(session, user.id, [(KEY_A, NOW + timedelta(seconds=1))],
                                    NOW)
    async with store.transaction() as session:
        assert await record_duplicates(session, joe.id, [], NOW + timedelta(seconds=1)) == 0
    assert await row_count(store) == 1  # ann's expired record waits for ann's next delivery


async def test_a_rolled_back_transaction_records_nothing(store: Store) -> None:
    joe = await new_user(store)
    with pytest.raises(RuntimeError):
        async with store.transaction() as session:
            await record_duplicates(session, joe.id, [(KEY_A, NOW + timedelta(hours=1))], NOW)
            raise RuntimeError("the delivery failed")
    assert not await seen(store, joe.id, KEY_A)


async def test_records_go_with_the_user(store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        await record_duplicates(session, joe.id, [(KEY_A, NOW + timedelta(hours=1))], NOW)
    async with store.transaction() as session:
        await delete_user(session, "joe@example.com")
    assert await row_count(store) == 0


async def test_special_use_is_set_on_creation_only(store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        await create_mailbox(session, joe.id, "Spam", special_use="\\junk")
        await ensure_mailbox(session, joe.id, "Lists", special_use="\\X-Lists")
        await ensure_mailbox(session, joe.id, "Lists", special_use="\\Flagged")  # exists
        await ensure_mailbox(session, joe.id, "Trash", special_use="\\Flagged")
        with pytest.raises(InvalidInput):
            await ensure_mailbox(session, joe.id, "Bad", special_use="Junk")
    async with store.read() as session:
        uses = await mailbox_special_uses(session, joe.id)
    assert uses == {"INBOX": None, "Junk": "\\Junk", "Trash": "\\Trash", "Sent": "\\Sent",
                    "Drafts": "\\Drafts", "Archive": "\\Archive", "Spam": "\\Junk",
                    "Lists": "\\X-Lists"}
    assert list(uses)[:2] == ["INBOX", "Junk"]  # oldest first
