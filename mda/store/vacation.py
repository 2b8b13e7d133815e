"""Vacation reply records (RFC 5230 §4.2 "Previous Response Tracking").

A record says "this user's vacation action with handle H replied to sender S; until
`expires_at` S gets no second reply for H" (§4.1: "...the same sender MUST NOT receive a
second response within the period"). The key is the hex SHA-256 of handle and sender
(`vacation_key`), so a long `:handle` costs no more than a short one; the sender is kept
in clear for the administrator.

Delivery checks `vacation_replied` early (a cheap read, to skip building the reply), then
claims the record with `claim_vacation_reply` in the recipient's own write transaction just
before sending, so concurrent deliveries from one sender send one reply. A reply that was not
sent (submission failed: `forget_vacation_reply`; delivery rolled back) leaves no record and
the next message from that sender gets its reply. Writing purges the user's expired
records (the sweep happens on access; an expired record is never read as current).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mda.store.models import SieveVacationReply

MAX_SENDER = 320  # octets kept of the sender (the column's size); the key covers all of it


def vacation_key(handle: str, sender: str) -> str:
    """The record key of one (handle, sender) pair.

    Args:
        handle: the vacation action's `:handle`, or the default handle the engine derived
            from its arguments (RFC 5230 §4.2).
        sender: the envelope sender replied to; compared case-insensitively.

    Returns:
        Hex SHA-256 (64 characters).
    """
    digest = hashlib.sha256(b"sieve vacation\0")
    digest.update(handle.encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(sender.lower().encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


async def vacation_replied(session: AsyncSession, user_id: int, handle: str, sender: str,
                           now: datetime) -> bool:
    """Did the user's vacation with this handle reply to this sender within the period?

    Args:
        session: any session.
        user_id: the user.
        handle: the vacation handle.
        sender: the envelope sender of the new message.
        now: the delivery time (aware); a record expiring at or before it is not current.

    Returns:
        True when an unexpired record exists (no reply is due, RFC 5230 §4.2).
    """
    return (await session.execute(select(SieveVacationReply.id).where(
        SieveVacationReply.user_id == user_id,
        SieveVacationReply.key_hash == vacation_key(handle, sender),
        SieveVacationReply.expires_at > now))).first() is not None


async def record_vacation_reply(session: AsyncSession, user_id: int, handle: str, sender: str,
                                expires_at: datetime, now: datetime) -> None:
    """Record a reply sent, and purge the user's expired records.

    Args:
        session: the write session of the recipient's delivery (the record commits with it).
        user_id: the user.
        handle: the vacation handle.
        sender: the envelope sender the reply went to.
        expires_at: the end of the period (aware); an existing record gets this expiry.
        now: records of this user expiring at or before `now` are deleted.
    """
    await session.execute(delete(SieveVacationReply).where(
        SieveVacationReply.user_id == user_id, SieveVacationReply.expires_at <= now))
    statement = _insert_record(session, user_id, handle, sender, expires_at)
    await session.execute(statement.on_conflict_do_update(
        index_elements=["user_id", "key_hash"],
        set_={"expires_at": statement.excluded.expires_at}))


def _insert_record(session: AsyncSession, user_id: int, handle: str, sender: str,
                   expires_at: datetime):  # noqa: ANN202 (dialect-specific Insert)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" \
        else sqlite.insert
    return insert(SieveVacationReply).values(
        user_id=user_id, key_hash=vacation_key(handle, sender),
        sender=sender.encode("utf-8", "surrogateescape")[:MAX_SENDER].decode("utf-8", "ignore"),
        expires_at=expires_at)


async def claim_vacation_reply(session: AsyncSession, user_id: int, handle: str, sender: str,
                               expires_at: datetime, now: datetime) -> bool:
    """Record a reply about to be sent unless one is current; say whether it was recorded.

    One statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE expired RETURNING`), so two
    messages from one sender delivered at the same moment cannot both get a reply (RFC 5230
    §4.1: "the same sender MUST NOT receive a second response within the period"): on
    PostgreSQL the second transaction waits for the first and then finds its record; SQLite
    has one writer at a time. A rollback releases the claim; a reply that then fails to
    send is given up with `forget_vacation_reply`.

    Args:
        session: the write session of the recipient's delivery.
        user_id: the user.
        handle: the vacation handle.
        sender: the envelope sender to reply to.
        expires_at: the end of the period (aware).
        now: a record expiring at or before `now` is replaced.

    Returns:
        True when this call recorded the reply (send it); False when a current record
        exists (no reply is due).
    """
    statement = _insert_record(session, user_id, handle, sender, expires_at)
    statement = statement.on_conflict_do_update(
        index_elements=["user_id", "key_hash"],
        set_={"expires_at": statement.excluded.expires_at},
        where=SieveVacationReply.expires_at <= now).returning(SieveVacationReply.id)
    return (await session.execute(statement)).first() is not None


async def forget_vacation_reply(session: AsyncSession, user_id: int, handle: str,
                                sender: str) -> None:
    """Delete the record of a claimed reply that could not be sent, so the sender's next
    message gets its reply.

    Args:
        session: the write session that claimed it.
        user_id: the user.
        handle: the vacation handle.
        sender: the envelope sender.
    """
    await session.execute(delete(SieveVacationReply).where(
        SieveVacationReply.user_id == user_id,
        SieveVacationReply.key_hash == vacation_key(handle, sender)))


__all__ = ["claim_vacation_reply", "forget_vacation_reply", "record_vacation_reply",
           "vacation_key", "vacation_replied"]
