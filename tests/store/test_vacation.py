"""Vacation reply records (RFC 5230 §4.2) on both backends."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from mda.store import Store, delete_user
from mda.store.models import SieveVacationReply
from mda.store.vacation import record_vacation_reply, vacation_key, vacation_replied
from tests.store.conftest import NOW, new_user


async def replied(store: Store, user_id: int, handle: str, sender: str, now=NOW) -> bool:
    async with store.read() as session:
        return await vacation_replied(session, user_id, handle, sender, now)


async def rows(store: Store) -> list[tuple[int, str]]:
    async with store.read() as session:
        result = await session.execute(
            select(SieveVacationReply.user_id, SieveVacationReply.sender)
            .order_by(SieveVacationReply.id))
        return [tuple(row) for row in result]


async def test_a_reply_is_remembered_per_user_handle_and_sender_until_it_expires(
        store: Store) -> None:
    joe = await new_user(store)
    ann = await new_user(store, "ann@example.com")
    async with store.transaction() as session:
        await record_vacation_reply(session, joe.id, "h", "Bob@Example.org",
                                    NOW + timedelta(days=1), NOW)
    assert await replied(store, joe.id, "h", "bob@example.org")  # any case
    assert await replied(store, joe.id, "h", "bob@example.org", NOW + timedelta(hours=23))
    assert not await replied(store, joe.id, "h", "bob@example.org", NOW + timedelta(days=1))
    assert not await replied(store, joe.id, "other", "bob@example.org")
    assert not await replied(store, joe.id, "h", "carol@example.org")
    assert not await replied(store, ann.id, "h", "bob@example.org")
    assert await rows(store) == [(joe.id, "Bob@Example.org")]


async def test_recording_again_renews_and_writing_purges_expired_records(
        store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        await record_vacation_reply(session, joe.id, "h", "a@x", NOW + timedelta(hours=1), NOW)
        await record_vacation_reply(session, joe.id, "h", "b@x", NOW + timedelta(days=2), NOW)
    later = NOW + timedelta(days=1)
    async with store.transaction() as session:  # a@x expired and is swept; b@x renewed
        await record_vacation_reply(session, joe.id, "h", "b@x", later + timedelta(days=2),
                                    later)
    assert await rows(store) == [(joe.id, "b@x")]
    assert await replied(store, joe.id, "h", "b@x", later + timedelta(days=1, hours=23))


async def test_records_go_with_the_user_and_keys_are_stable(store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        await record_vacation_reply(session, joe.id, "h" * 5000, "s" * 400 + "@x",
                                    NOW + timedelta(days=1), NOW)
    assert await replied(store, joe.id, "h" * 5000, "s" * 400 + "@x")
    async with store.transaction() as session:
        await delete_user(session, "joe@example.com")
    async with store.read() as session:
        assert (await session.execute(select(func.count(SieveVacationReply.id)))
                ).scalar_one() == 0
    assert vacation_key("h", "A@X") == vacation_key("h", "a@x") != vacation_key("g", "a@x")
