"""Delivery fixtures: a Deliverer on a migrated real database, and helpers to set up users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mda.config import Settings
from mda.delivery import Deliverer, Transaction
from mda.store import Store, User, activate_script, add_user, put_script
from mda.store.migrate import upgrade_async

RECEIVED_AT = datetime(2024, 5, 1, 12, 30, 15, tzinfo=UTC)
MESSAGE = (b"From: Ann <ann@example.org>\r\nTo: joe@example.com\r\n"
           b"Subject: Weekly report\r\nMessage-ID: <1@example.org>\r\n\r\nHello Joe\r\n")


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: hostname mx.test, a private Sieve directory, overrides."""
    (tmp_path / "sieve_scripts").mkdir(exist_ok=True)

    def make(url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": url, "hostname": "mx.test",
                                  "sieve_scripts_dir": tmp_path / "sieve_scripts"}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A Store on a migrated database of the backend under test."""
    await upgrade_async(database_url)
    async with Store(database_url) as s:
        yield s


@pytest.fixture
def deliverer(store: Store, settings_factory: Callable[..., Settings]) -> Deliverer:
    """A Deliverer with default settings on that store."""
    return Deliverer(store, settings_factory(store.url))


async def make_user(store: Store, address: str = "joe@example.com", *, script: str | None = None,
                    **limits: int | None) -> User:
    """Add a user, optionally with an active script (stored as given, compiled or not)."""
    async with store.transaction() as session:
        user = await add_user(session, address, **limits)
        if script is not None:
            await put_script(session, user.id, "main", script)
            await activate_script(session, user.id, "main")
    return user


def transaction(*recipients: str, data: bytes = MESSAGE, mail_from: str = "ann@example.org",
                queue_id: str = "Q1") -> Transaction:
    """A Transaction as the LMTP layer builds it."""
    return Transaction(queue_id=queue_id, mail_from=mail_from, recipients=recipients,
                       data=data, peer="192.0.2.7:40000", helo="mta.example.org",
                       received_at=RECEIVED_AT)
