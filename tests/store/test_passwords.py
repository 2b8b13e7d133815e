"""set_password_hash on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import pytest

from mda.passwords import hash_password, verify_password
from mda.store import InvalidInput, Store, UserNotFound, get_user, set_password_hash
from tests.store.conftest import new_user


async def test_set_replace_and_remove_a_password_hash(store: Store) -> None:
    await new_user(store, "Joe@Example.COM")
    stored = hash_password("correct horse")
    async with store.transaction() as session:
        user = await set_password_hash(session, "Joe@EXAMPLE.com", stored)
        assert user.address == "Joe@example.com" and user.password_hash == stored
    async with store.read() as session:
        assert verify_password((await get_user(session, "Joe@example.com")).password_hash,
                               "correct horse")
    longest = "{PLAIN}" + "x" * 248
    async with store.transaction() as session:
        await set_password_hash(session, "Joe@example.com", longest)
    async with store.read() as session:
        assert (await get_user(session, "Joe@example.com")).password_hash == longest
    async with store.transaction() as session:
        assert (await set_password_hash(session, "Joe@example.com", None)).password_hash is None
    async with store.read() as session:
        assert (await get_user(session, "Joe@example.com")).password_hash is None


async def test_refused_hashes_and_unknown_users_change_nothing(store: Store) -> None:
    await new_user(store, "joe@example.com")
    for bad, reason in (("", "empty password hash"), ("{PLAIN}" + "x" * 249, "longer than 255")):
        with pytest.raises(InvalidInput, match=reason):
            async with store.transaction() as session:
                await set_password_hash(session, "joe@example.com", bad)
    with pytest.raises(UserNotFound):
        async with store.transaction() as session:
            await set_password_hash(session, "nobody@example.com", "{PLAIN}x")
    async with store.read() as session:
        assert (await get_user(session, "joe@example.com")).password_hash is None
