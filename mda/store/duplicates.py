"""Duplicate-tracking records of the Sieve duplicate test (RFC 7352 §3).

A record says "this user's delivery with key K was handled; until `expires_at` another
message with the same key is a duplicate". The key is an opaque hex SHA-256 the engine
computes (`mda.sieve.DuplicateMark.id_hash`). Delivery writes the records in the same
transaction as the recipient's stored copies (`record_duplicates`), so they exist only when
that delivery committed, and purges the user's expired records there too.

Redirect records share the table: delivery keys them on the message and the redirect target
(`mda.delivery.outbound.redirect_key`), so one message is redirected to one address once
per period even when it reaches the user twice (two subaddresses, two aliases).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mda.store.models import SieveDuplicate


async def duplicate_seen(session: AsyncSession, user_id: int, key_hash: str,
                         now: datetime) -> bool:
    """Is an unexpired record with this key stored for the user (RFC 7352 §3)?

    Args:
        session: any session.
        user_id: the user.
        key_hash: the record's key.
        now: the time to compare expiries with (aware).

    Returns:
        True when a record exists whose expiry is after `now`.
    """
    return (await session.execute(select(SieveDuplicate.id).where(
        SieveDuplicate.user_id == user_id, SieveDuplicate.key_hash == key_hash,
        SieveDuplicate.expires_at > now))).first() is not None


async def record_duplicates(session: AsyncSession, user_id: int,
                            records: Iterable[tuple[str, datetime]], now: datetime) -> int:
    """Write duplicate records for the user and purge the user's expired ones.

    A key that is already stored gets the new expiry (RFC 7352 §3.4 `:last` renews it; an
    expired record is simply replaced).

    Args:
        session: the write session of the recipient's delivery (records must commit with
            the stored copies, or not at all).
        user_id: the user.
        records: (key hash, expiry as an aware datetime) pairs; a key given twice keeps
            the later expiry.
        now: expired records (expiry at or before `now`) of this user are deleted.

    Returns:
        The number of records written.
    """
    expiries: dict[str, datetime] = {}
    for key, expires_at in records:
        expiries[key] = max(expires_at, expiries.get(key, expires_at))
    await session.execute(delete(SieveDuplicate).where(
        SieveDuplicate.user_id == user_id, SieveDuplicate.expires_at <= now))
    if not expiries:
        return 0
    statement = _dialect_insert(session)(SieveDuplicate).values(
        [{"user_id": user_id, "key_hash": key, "expires_at": expires_at}
         for key, expires_at in expiries.items()])
    await session.execute(statement.on_conflict_do_update(
        index_elements=["user_id", "key_hash"],
        set_={"expires_at": statement.excluded.expires_at}))
    return len(expiries)


def _dialect_insert(session: AsyncSession):  # noqa: ANN202 (dialect-specific Insert)
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" \
        else sqlite.insert


async def claim_duplicate(session: AsyncSession, user_id: int, key_hash: str,
                          expires_at: datetime, now: datetime) -> bool:
    """Write the record `key_hash` unless an unexpired one exists; say whether it was written.

    One statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE expired RETURNING`), so two
    deliveries racing for the same key cannot both claim it: on PostgreSQL the second waits
    for the first's transaction and then finds its record; SQLite has one writer at a time.
    Delivery claims a redirect's record this way, in the recipient's transaction, just before
    sending it; a rollback releases the claim.

    Args:
        session: the write session of the recipient's delivery.
        user_id: the user.
        key_hash: the record's key.
        expires_at: the new record's expiry (aware).
        now: a stored record expiring at or before `now` is replaced.

    Returns:
        True when this call wrote the record (the caller may act); False when an unexpired
        record was already there.
    """
    statement = _dialect_insert(session)(SieveDuplicate).values(
        user_id=user_id, key_hash=key_hash, expires_at=expires_at)
    statement = statement.on_conflict_do_update(
        index_elements=["user_id", "key_hash"],
        set_={"expires_at": statement.excluded.expires_at},
        where=SieveDuplicate.expires_at <= now).returning(SieveDuplicate.id)
    return (await session.execute(statement)).first() is not None

