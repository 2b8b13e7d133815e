"""Users and quota on real SQLite files and a real PostgreSQL database."""

from __future__ import annotations

import asyncio

import pytest

from mda.store import (
    UNCHANGED,
    InvalidAddress,
    QuotaExceeded,
    Store,
    UserExists,
    UserNotFound,
    add_user,
    charge_quota,
    delete_user,
    find_user,
    get_user,
    list_mailboxes,
    list_users,
    quota_usage,
    set_quota,
)
from tests.store.conftest import new_user


async def test_new_user_has_empty_inbox_and_special_use_mailboxes(store: Store) -> None:
    user = await new_user(store, "Joe@Example.COM", storage_limit=1000, messages_limit=5)
    assert user.address == "Joe@example.com"
    async with store.read() as session:
        boxes = await list_mailboxes(session, user.id)
        usage = await quota_usage(session, "Joe@EXAMPLE.com")
    assert [(b.name, b.messages, b.bytes, b.special_use) for b in boxes] == [
        ("INBOX", 0, 0, None), ("Archive", 0, 0, "\\Archive"), ("Drafts", 0, 0, "\\Drafts"),
        ("Junk", 0, 0, "\\Junk"), ("Sent", 0, 0, "\\Sent"), ("Trash", 0, 0, "\\Trash")]
    assert (usage.storage_used, usage.storage_limit, usage.messages_used,
            usage.messages_limit) == (0, 1000, 0, 5)


async def test_lookup_is_case_insensitive_in_the_domain_only(store: Store) -> None:
    await new_user(store, "joe@example.com")
    async with store.read() as session:
        assert (await get_user(session, "joe@EXAMPLE.com")).address == "joe@example.com"
        assert await find_user(session, "JOE@example.com") is None


async def test_adding_an_existing_user_fails_and_keeps_the_first(store: Store) -> None:
    await new_user(store, "joe@example.com", storage_limit=10)
    with pytest.raises(UserExists):
        await new_user(store, "joe@EXAMPLE.com")
    async with store.read() as session:
        users = await list_users(session)
    assert [(u.address, u.storage_limit) for u in users] == [("joe@example.com", 10)]


async def test_bad_address_and_negative_limit_are_refused(store: Store) -> None:
    with pytest.raises(InvalidAddress):
        await new_user(store, "not-an-address")
    with pytest.raises(ValueError, match="negative"):
        await new_user(store, "joe@example.com", storage_limit=-1)
    async with store.read() as session:
        assert await list_users(session) == []


async def test_set_quota_changes_only_what_is_given(store: Store) -> None:
    await new_user(store, "joe@example.com", storage_limit=100, messages_limit=7)
    async with store.transaction() as session:
        user = await set_quota(session, "joe@example.com", storage_limit=None)
    assert (user.storage_limit, user.messages_limit) == (None, 7)
    async with store.transaction() as session:
        user = await set_quota(session, "joe@example.com", storage_limit=UNCHANGED,
                               messages_limit=3)
    assert (user.storage_limit, user.messages_limit) == (None, 3)
    with pytest.raises(UserNotFound):
        async with store.transaction() as session:
            await set_quota(session, "nobody@example.com", storage_limit=1)


async def test_charge_fits_exactly_at_the_limit_and_not_one_byte_more(store: Store) -> None:
    user = await new_user(store, "joe@example.com", storage_limit=100, messages_limit=2)
    async with store.transaction() as session:
        usage = await charge_quota(session, user.id, 60)
    assert (usage.storage_used, usage.messages_used) == (60, 1)
    with pytest.raises(QuotaExceeded) as info:
        async with store.transaction() as session:
            await charge_quota(session, user.id, 41)
    assert (info.value.storage_used, info.value.storage_limit) == (60, 100)
    async with store.transaction() as session:
        usage = await charge_quota(session, user.id, 40)
    assert (usage.storage_used, usage.messages_used) == (100, 2)
    assert (await _reload(store, user.address)).quota_full


async def test_message_count_limit(store: Store) -> None:
    user = await new_user(store, "joe@example.com", messages_limit=1)
    async with store.transaction() as session:
        await charge_quota(session, user.id, 5)
    with pytest.raises(QuotaExceeded):
        async with store.transaction() as session:
            await charge_quota(session, user.id, 0)
    async with store.read() as session:
        usage = await quota_usage(session, user.address)
    assert (usage.storage_used, usage.messages_used) == (5, 1)


async def test_concurrent_charges_never_pass_the_limit(store: Store) -> None:
    """40 writers race for a limit that fits 10 of them: exactly 10 win."""
    user = await new_user(store, "joe@example.com", storage_limit=1000)

    async def charge() -> bool:
        try:
            async with store.transaction() as session:
                await charge_quota(session, user.id, 100)
                await asyncio.sleep(0)  # let others interleave inside the transaction
            return True
        except QuotaExceeded:
            return False

    results = await asyncio.gather(*(charge() for _ in range(40)))
    usage = (await _reload(store, user.address))
    assert results.count(True) == 10
    assert (usage.storage_used, usage.messages_used) == (1000, 10)


async def test_delete_user_removes_everything(store: Store) -> None:
    await new_user(store, "joe@example.com")
    await new_user(store, "ann@example.com")
    async with store.transaction() as session:
        await delete_user(session, "joe@EXAMPLE.com")
    async with store.read() as session:
        assert [u.address for u in await list_users(session)] == ["ann@example.com"]
    with pytest.raises(UserNotFound):
        async with store.transaction() as session:
            await delete_user(session, "joe@example.com")


async def _reload(store: Store, address: str):
    async with store.read() as session:
        return await get_user(session, address)
