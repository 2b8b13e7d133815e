"""Many concurrent deliveries for one user near the limit, on SQLite and PostgreSQL:
counters equal the sum of stored sizes, never exceed the limit, UIDs stay unique."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from mda.config import Settings
from mda.delivery import Deliverer
from mda.store import Store, get_user, list_messages
from mda.store.migrate import upgrade_async
from mda.store.models import Mailbox, Message, MessageBlob
from tests.delivery.conftest import MESSAGE, make_user, transaction


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")


async def test_concurrent_deliveries_near_the_limit(
        backend_url: str, settings_factory: Callable[..., Settings]) -> None:
    await upgrade_async(backend_url)
    async with Store(backend_url) as store:
        deliverer = Deliverer(store, settings_factory(backend_url))
        await make_user(store, "joe@example.com")
        [probe] = await deliverer.deliver(transaction("joe@example.com", queue_id="Q0000"))
        assert probe.result == "stored"
        async with store.read() as session:
            copy_size = (await get_user(session, "joe@example.com")).storage_used
        limit = copy_size * 12 + copy_size // 3  # room for 11 more copies and a bit
        await make_user(store, "ann@example.com", storage_limit=limit)

        async def one(n: int):
            [outcome] = await deliverer.deliver(
                transaction("ann@example.com", queue_id=f"Q{n:04d}"))
            return outcome

        outcomes = await asyncio.gather(*(one(n) for n in range(40)))
        results = [o.result for o in outcomes]
        assert results.count("stored") == 12
        assert results.count("over_quota") == 28
        assert all(o.reply.code == 552 for o in outcomes if o.result == "over_quota")

        async with store.read() as session:
            user = await get_user(session, "ann@example.com")
            total, count = (await session.execute(
                select(func.coalesce(func.sum(Message.size), 0), func.count(Message.id))
                .join(Mailbox, Message.mailbox_id == Mailbox.id)
                .where(Mailbox.user_id == user.id))).one()
            uids = [m.uid for m in await list_messages(session, user.id)]
            orphans = (await session.execute(select(func.count(MessageBlob.id)).where(
                MessageBlob.refcount <= 0))).scalar_one()
        assert (user.storage_used, user.messages_used) == (int(total), count) == (12 * copy_size, 12)
        assert user.storage_used <= limit
        assert sorted(uids) == list(range(1, 13))
        assert orphans == 0
        assert len(MESSAGE) < copy_size
