"""Per-user Sieve script quotas (RFC 5804 §1.3) on SQLite and PostgreSQL: counted in octets,
a replaced script counted once, exact when uploads race."""

from __future__ import annotations

import asyncio

import pytest

from mda.store import Store, get_script, list_scripts, put_script
from mda.store.errors import ScriptQuotaExceeded, UserNotFound
from mda.store.scripts import ScriptQuota, check_script_quota
from tests.store.conftest import new_user


async def _put(store: Store, user_id: int, name: str, source: str,
               quota: ScriptQuota) -> None:
    async with store.transaction() as session:
        await put_script(session, user_id, name, source, quota=quota)


async def test_sizes_are_utf8_octets(store: Store) -> None:
    user = await new_user(store)
    source = "#äö\r\nkeep;"  # 10 characters, 12 octets
    with pytest.raises(ScriptQuotaExceeded) as info:
        await _put(store, user.id, "a", source, ScriptQuota(max_size=11))
    assert (info.value.limit, info.value.used) == ("size", 12)
    await _put(store, user.id, "a", source, ScriptQuota(max_storage=12))
    with pytest.raises(ScriptQuotaExceeded) as info:
        await _put(store, user.id, "b", "k", ScriptQuota(max_storage=12))
    assert (info.value.limit, info.value.used) == ("storage", 13)


async def test_each_quota_is_enforced(store: Store) -> None:
    user = await new_user(store)
    quota = ScriptQuota(max_scripts=2, max_size=20, max_storage=30)
    await _put(store, user.id, "a", "#ä\r\nkeep;", quota)  # 10 octets
    await _put(store, user.id, "b", "#" * 11 + "\r\nkeep;", quota)  # 18: total 28
    with pytest.raises(ScriptQuotaExceeded) as info:
        await _put(store, user.id, "c", "keep;", quota)
    assert (info.value.limit, info.value.used, info.value.allowed) == ("scripts", 3, 2)
    with pytest.raises(ScriptQuotaExceeded) as info:
        await _put(store, user.id, "a", "#" * 14 + "\r\nkeep;", quota)  # 21 > 20
    assert (info.value.limit, info.value.used, info.value.allowed) == ("size", 21, 20)
    with pytest.raises(ScriptQuotaExceeded) as info:  # 13 + 18 = 31 > 30
        await _put(store, user.id, "a", "#" * 6 + "\r\nkeep;", quota)
    assert (info.value.limit, info.value.used, info.value.allowed) == ("storage", 31, 30)
    assert str(info.value) == ("Sieve script quota: all scripts together would take 31 "
                               "octets; at most 30 are allowed")
    await _put(store, user.id, "a", "#" * 5 + "\r\nkeep;", quota)  # 12 + 18 = 30: fits
    async with store.read() as session:
        assert (await get_script(session, user.id, "a")).source == "#####\r\nkeep;"
        await check_script_quota(session, user.id, "b", 18, quota)
        with pytest.raises(ScriptQuotaExceeded):
            await check_script_quota(session, user.id, "b", 19, quota)


async def test_zero_means_unlimited_and_other_users_do_not_count(store: Store) -> None:
    joe = await new_user(store)
    ann = await new_user(store, "ann@example.com")
    tight = ScriptQuota(max_scripts=1)
    await _put(store, ann.id, "x", "keep;", tight)
    await _put(store, joe.id, "x", "keep;", tight)
    for index in range(5):
        await _put(store, joe.id, f"s{index}", "keep;" * 100, ScriptQuota())


async def test_refused_store_leaves_nothing(store: Store) -> None:
    user = await new_user(store)
    with pytest.raises(ScriptQuotaExceeded):
        await _put(store, user.id, "a", "keep;", ScriptQuota(max_size=4))
    async with store.read() as session:
        assert await list_scripts(session, user.id) == []


async def test_missing_user(store: Store) -> None:
    async with store.transaction() as session:
        with pytest.raises(UserNotFound):
            await check_script_quota(session, 12345, "a", 1, ScriptQuota(max_scripts=3))


async def test_racing_uploads_never_pass_the_quota(store: Store) -> None:
    """Ten uploads of different scripts at once with room for three: exactly three land."""
    user = await new_user(store)
    quota = ScriptQuota(max_scripts=3)

    async def upload(index: int) -> bool:
        try:
            await _put(store, user.id, f"s{index}", "keep;", quota)
        except ScriptQuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(upload(i) for i in range(10)))
    assert sum(results) == 3
    async with store.read() as session:
        assert len(await list_scripts(session, user.id)) == 3
