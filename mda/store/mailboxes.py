"""Mailboxes: creation, lookup, listing and race-free UID allocation.

UIDs (RFC 3501 §2.3.1.1) are handed out by `allocate_uid`, one `UPDATE mailboxes SET
uidnext = uidnext + 1 WHERE id = :m RETURNING uidnext`: the row lock serialises concurrent
deliveries into one mailbox, also across several mda instances on one PostgreSQL, and the
unique (mailbox_id, uid) constraint backs it up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from mda.store.errors import MailboxExists, MailboxNotFound
from mda.store.models import Mailbox, Message
from mda.store.names import normalize_mailbox_name

_last_uidvalidity = 0


@dataclass(frozen=True, slots=True)
class MailboxSummary:
    """A mailbox as `mda mailbox list` shows it.

    Attributes:
        name: the mailbox name.
        messages: number of messages in it.
        bytes: their total size as stored.
    """

    name: str
    messages: int
    bytes: int


def _new_uidvalidity() -> int:
    """A UIDVALIDITY: seconds since the epoch, strictly increasing within this process."""
    global _last_uidvalidity
    _last_uidvalidity = max(int(time.time()), _last_uidvalidity + 1) & 0xFFFFFFFF
    return _last_uidvalidity


async def create_mailbox(session: AsyncSession, user_id: int, name: str) -> Mailbox:
    """Create a mailbox.

    Args:
        session: a write session.
        user_id: the owner.
        name: the mailbox name (canonicalised, see `normalize_mailbox_name`).

    Returns:
        The new mailbox.

    Raises:
        InvalidMailboxName: the name is malformed.
        MailboxExists: the user already has it.
    """
    canonical = normalize_mailbox_name(name)
    if not await _insert_mailbox(session, user_id, canonical):
        raise MailboxExists(f"mailbox {canonical} already exists")
    return await get_mailbox(session, user_id, canonical)


async def ensure_mailbox(session: AsyncSession, user_id: int, name: str) -> Mailbox:
    """The user's mailbox with this name, created if missing (safe against a concurrent
    creation of the same name).

    Args:
        session: a write session.
        user_id: the owner.
        name: the mailbox name.

    Returns:
        The mailbox.

    Raises:
        InvalidMailboxName: the name is malformed.
    """
    canonical = normalize_mailbox_name(name)
    await _insert_mailbox(session, user_id, canonical)
    return await get_mailbox(session, user_id, canonical)


async def _insert_mailbox(session: AsyncSession, user_id: int, canonical: str) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when this call created the mailbox."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" \
        else sqlite.insert
    result = await session.execute(
        insert(Mailbox)
        .values(user_id=user_id, name=canonical, uidvalidity=_new_uidvalidity(), uidnext=1)
        .on_conflict_do_nothing(index_elements=["user_id", "name"])
        .returning(Mailbox.id))
    return result.scalar_one_or_none() is not None


async def get_mailbox(session: AsyncSession, user_id: int, name: str) -> Mailbox:
    """The user's mailbox with this name.

    Raises:
        InvalidMailboxName: the name is malformed.
        MailboxNotFound: no such mailbox.
    """
    canonical = normalize_mailbox_name(name)
    mailbox = (await session.execute(
        select(Mailbox).where(Mailbox.user_id == user_id, Mailbox.name == canonical)
    )).scalar_one_or_none()
    if mailbox is None:
        raise MailboxNotFound(f"no mailbox {canonical}")
    return mailbox


async def mailbox_names(session: AsyncSession, user_id: int) -> frozenset[str]:
    """The names of all the user's mailboxes."""
    return frozenset((await session.execute(
        select(Mailbox.name).where(Mailbox.user_id == user_id))).scalars())


async def list_mailboxes(session: AsyncSession, user_id: int) -> list[MailboxSummary]:
    """The user's mailboxes with message count and total size, INBOX first, then by name."""
    rows = (await session.execute(
        select(Mailbox.name, func.count(Message.id), func.coalesce(func.sum(Message.size), 0))
        .outerjoin(Message, Message.mailbox_id == Mailbox.id)
        .where(Mailbox.user_id == user_id)
        .group_by(Mailbox.id, Mailbox.name))).all()
    summaries = [MailboxSummary(name, int(count), int(size)) for name, count, size in rows]
    return sorted(summaries, key=lambda s: (s.name != "INBOX", s.name))


async def allocate_uid(session: AsyncSession, mailbox_id: int) -> int:
    """Take the mailbox's next UID (RFC 3501 §2.3.1.1: strictly ascending, never reused).

    Args:
        session: the write session that stores the message row.
        mailbox_id: the mailbox.

    Returns:
        The UID for the new message.

    Raises:
        MailboxNotFound: the mailbox no longer exists.
    """
    uidnext = (await session.execute(
        update(Mailbox).where(Mailbox.id == mailbox_id)
        .values(uidnext=Mailbox.uidnext + 1)
        .returning(Mailbox.uidnext)
        .execution_options(synchronize_session=False))).scalar_one_or_none()
    if uidnext is None:
        raise MailboxNotFound(f"mailbox id {mailbox_id} no longer exists")
    return int(uidnext) - 1
