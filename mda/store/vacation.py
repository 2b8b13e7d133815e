"""Vacation reply records (RFC 5230 §4.2 "Previous Response Tracking").

A record says "this user's vacation action with handle H replied to sender S; until
`expires_at` S gets no second reply for H" (§4.1: "...the same sender MUST NOT receive a
second response within the period"). The key is the hex SHA-256 of handle and sender
(`vacation_key`), so a long `:handle` costs no more than a short one; the sender is kept
in clear for the administrator.

Delivery checks `vacation_replied` before sending, and writes the record with
`record_vacation_reply` in the recipient's own transaction once the reply was handed to the
MTA, so a reply that was not sent (submission failed, delivery rolled back) leaves no record
and the next message from that sender gets its reply. Writing purges the user's expired
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
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" \
        else sqlite.insert
    statement = insert(SieveVacationReply).values(
        user_id=user_id, key_hash=vacation_key(handle, sender),
        sender=sender.encode("utf-8", "surrogateescape")[:MAX_SENDER].decode("utf-8", "ignore"),
        expires_at=expires_at)
    await session.execute(statement.on_conflict_do_update(
        index_elements=["user_id", "key_hash"],
        set_={"expires_at": statement.excluded.expires_at}))


__all__ = ["record_vacation_reply", "vacation_key", "vacation_replied"]
