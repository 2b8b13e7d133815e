"""Mailboxes: creation, lookup, listing, special-use attributes and race-free UID allocation.

A mailbox may carry one special-use attribute (RFC 6154 §2, e.g. `\\Junk`), set when it is
created; every user starts with INBOX and the `DEFAULT_SPECIAL_MAILBOXES`.

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
from mda.store.names import normalize_mailbox_name, normalize_special_use

_last_uidvalidity = 0


@dataclass(frozen=True, slots=True)
class MailboxSummary:
    """A mailbox as `mda mailbox list` shows it.

    Attributes:
        name: the mailbox name.
        messages: number of messages in it.
        bytes: their total size as stored.
        special_use: its special-use attribute (RFC 6154 §2), or None.
    """

    name: str
    messages: int
    bytes: int
    special_use: str | None = None


def _new_uidvalidity() -> int:
    """A UIDVALIDITY: seconds since the epoch, strictly increasing within this process."""
    global _last_uidvalidity
    _last_uidvalidity = max(int(time.time()), _last_uidvalidity + 1) & 0xFFFFFFFF
    return _last_uidvalidity


async def create_mailbox(session: AsyncSession, user_id: int, name: str, *,
                         special_use: str | None = None) -> Mailbox:
    """Create a mailbox.

    Args:
        session: a write session.
        user_id: the owner.
        name: the mailbox name (canonicalised, see `normalize_mailbox_name`).
        special_use: its special-use attribute (RFC 6154 §2), or None.

    Returns:
        The new mailbox.

    Raises:
        InvalidMailboxName: the name is malformed.
        InvalidInput: the special-use attribute is malformed.
        MailboxExists: the user already has it.
    """
    canonical = normalize_mailbox_name(name)
    if not await _insert_mailbox(session, user_id, canonical, special_use):
        raise MailboxExists(f"mailbox {canonical} already exists")
    return await get_mailbox(session, user_id, canonical)


async def ensure_mailbox(session: AsyncSession, user_id: int, name: str, *,
                         special_use: str | None = None) -> Mailbox:
    """The user's mailbox with this name, created if missing (safe against a concurrent
    creation of the same name).

    Args:
        session: a write session.
        user_id: the owner.
        name: the mailbox name.
        special_use: the special-use attribute (RFC 6154 §2) to give the mailbox if this
            call creates it; an existing mailbox keeps its own.

    Returns:
        The mailbox.

    Raises:
        InvalidMailboxName: the name is malformed.
        InvalidInput: the special-use attribute is malformed.
    """
    canonical = normalize_mailbox_name(name)
    await _insert_mailbox(session, user_id, canonical, special_use)
    return await get_mailbox(session, user_id, canonical)


async def _insert_mailbox(session: AsyncSession, user_id: int, canonical: str,
                          special_use: str | None = None) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when this call created the mailbox."""
    if special_use is not None:
        special_use = normalize_special_use(special_use)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" \
        else sqlite.insert
    result = await session.execute(
        insert(Mailbox)
        .values(user_id=user_id, name=canonical, uidvalidity=_new_uidvalidity(), uidnext=1,
                special_use=special_use)
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


async def mailbox_special_uses(session: AsyncSession, user_id: int) -> dict[str, str | None]:
    """Every mailbox of the user with its special-use attribute (RFC 6154 §2) or None.

    Returns:
        {name: attribute or None}, oldest mailbox first (so of two mailboxes with the same
        attribute the older one comes first).
    """
    rows = (await session.execute(
        select(Mailbox.name, Mailbox.special_use).where(Mailbox.user_id == user_id)
        .order_by(Mailbox.id))).all()
    return {name: use for name, use in rows}


async def list_mailboxes(session: AsyncSession, user_id: int) -> list[MailboxSummary]:
    """The user's mailboxes with message count, total size and special-use attribute,
    INBOX first, then by name."""
    rows = (await session.execute(
        select(Mailbox.name, func.count(Message.id), func.coalesce(func.sum(Message.size), 0),
               Mailbox.special_use)
        .outerjoin(Message, Message.mailbox_id == Mailbox.id)
        .where(Mailbox.user_id == user_id)
        .group_by(Mailbox.id, Mailbox.name, Mailbox.special_use))).all()
    summaries = [MailboxSummary(name, int(count), int(size), use)
                 for name, count, size, use in rows]
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
