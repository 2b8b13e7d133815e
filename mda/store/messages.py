"""Stored messages and the shared message blobs under them.

Single-instance storage: the bytes of one LMTP transaction go into one `message_blobs` row
(`mda.store.blobs.store_blob`, in its own short transaction, with refcount 0); each recipient's copy is a
`messages` row holding its own header prefix and pointing at the blob (`append_message`,
which adds one reference in the recipient's transaction). The stored message is
`header_prefix + blob`, and its size as stored is what quota counts. A large blob's bytes
are stored in chunks (`mda.store.blobs`); reading and listing put them back together.

A blob whose references all went away is deleted (`release_blob`, `delete_message`). A blob
that never got a reference (every recipient rejected, or the process died between the two
transactions) is an orphan: `drop_blob_if_unreferenced` removes it at the end of the
transaction, `delete_orphan_blobs` sweeps old ones at start-up.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mda.store.blobs import CHUNK_SIZE, add_blob_reference, blob_bytes, release_blob
from mda.store.errors import MessageNotFound, StoreError
from mda.store.mailboxes import allocate_uid, get_mailbox
from mda.store.models import Mailbox, Message, MessageBlob, MessageBlobChunk
from mda.store.users import charge_quota, release_quota

HEADER_PEEK = 64 * 1024  # bytes of a blob read to show Subject and From in listings
# The listing reads a chunked blob's head from its first chunk alone.
assert HEADER_PEEK <= CHUNK_SIZE


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message copy just stored by `append_message`.

    Attributes:
        mailbox: the mailbox name.
        uid: its UID in that mailbox.
        size: bytes as stored (header prefix + blob).
    """

    mailbox: str
    uid: int
    size: int


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message as `mda message list` shows it.

    Attributes:
        mailbox: mailbox name.
        uid: UID in the mailbox.
        size: bytes as stored.
        flags: sorted flag names.
        subject: the decoded Subject (RFC 2047), "" when absent.
        sender: the decoded From, "" when absent.
        internal_date: when it was stored (aware UTC).
    """

    mailbox: str
    uid: int
    size: int
    flags: tuple[str, ...]
    subject: str
    sender: str
    internal_date: datetime


def is_valid_flag(flag: str) -> bool:
    """Whether a flag can be stored: not empty, no whitespace or control characters
    (an IMAP flag is an atom or a `\\`-prefixed atom, RFC 3501 §9 `flag`)."""
    return bool(flag) and not any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F
                                  for ch in flag)


def encode_flags(flags: frozenset[str] | set[str] | tuple[str, ...]) -> str:
    """The stored form of a flag set: the flags sorted, space separated.

    Raises:
        StoreError: a flag is empty or contains whitespace or a control character.
    """
    for flag in flags:
        if not is_valid_flag(flag):
            raise StoreError(f"invalid flag {flag!r}")
    return " ".join(sorted(set(flags)))


def decode_flags(stored: str) -> tuple[str, ...]:
    """The flags of a stored flag string, sorted."""
    return tuple(stored.split())


async def append_message(session: AsyncSession, *, user_id: int, mailbox: Mailbox,
                         blob_id: int, blob_size: int, header_prefix: bytes,
                         flags: frozenset[str], internal_date: datetime) -> StoredMessage:
    """Store one copy of a blob in a mailbox, charging the user's quota.

    In the caller's transaction: quota charge (conditional UPDATE), UID allocation, blob
    reference and message row. If anything fails the caller's rollback undoes it all.

    Args:
        session: the recipient's write session.
        user_id: the owner of `mailbox`.
        mailbox: the target mailbox.
        blob_id: a blob from `store_blob`.
        blob_size: its size in bytes.
        header_prefix: the per-recipient header lines (CRLF-terminated) put before the blob.
        flags: the message's flags.
        internal_date: the internal date (aware UTC; RFC 3501 §2.3.3).

    Returns:
        Where it was stored and its size as stored.

    Raises:
        QuotaExceeded: the copy does not fit in the user's quota.
        MailboxNotFound: the mailbox was deleted meanwhile.
        StoreError: the blob is gone, or a flag is invalid.
    """
    size = len(header_prefix) + blob_size
    stored_flags = encode_flags(flags)
    await charge_quota(session, user_id, size)
    uid = await allocate_uid(session, mailbox.id)
    await add_blob_reference(session, blob_id, blob_size)
    session.add(Message(mailbox_id=mailbox.id, uid=uid, blob_id=blob_id,
                        header_prefix=header_prefix, size=size, flags=stored_flags,
                        internal_date=internal_date))
    await session.flush()
    return StoredMessage(mailbox.name, uid, size)


async def list_messages(session: AsyncSession, user_id: int,
                        mailbox: str | None = None) -> list[MessageInfo]:
    """The user's messages, by mailbox (INBOX first) and UID.

    Args:
        session: any session.
        user_id: the owner.
        mailbox: only this mailbox; None for all.

    Returns:
        One `MessageInfo` per message; Subject and From come from the first 64 KiB
        (`HEADER_PEEK`) of the blob, or of its first chunk.

    Raises:
        InvalidMailboxName, MailboxNotFound: `mailbox` is malformed or does not exist.
    """
    first_chunk = and_(MessageBlobChunk.blob_id == MessageBlob.id, MessageBlobChunk.seq == 0)
    query = (select(Mailbox.name, Message.uid, Message.size, Message.flags,
                    Message.internal_date, Message.header_prefix,
                    func.substr(MessageBlob.data, 1, HEADER_PEEK),
                    func.substr(MessageBlobChunk.data, 1, HEADER_PEEK))
             .join(Mailbox, Message.mailbox_id == Mailbox.id)
             .join(MessageBlob, Message.blob_id == MessageBlob.id)
             .outerjoin(MessageBlobChunk, first_chunk)
             .where(Mailbox.user_id == user_id))
    if mailbox is not None:
        box = await get_mailbox(session, user_id, mailbox)
        query = query.where(Mailbox.id == box.id)
    rows = (await session.execute(query)).all()
    infos = []
    for name, uid, size, flags, date, prefix, head, chunk_head in rows:
        subject, sender = _subject_and_from(bytes(prefix) + bytes(head or chunk_head or b""))
        infos.append(MessageInfo(name, int(uid), int(size), decode_flags(flags),
                                 subject, sender, date))
    return sorted(infos, key=lambda m: (m.mailbox != "INBOX", m.mailbox, m.uid))


def _subject_and_from(head: bytes) -> tuple[str, str]:
    """Decoded Subject and From of a message head; "" for a missing or unreadable field."""
    end = head.find(b"\r\n\r\n")
    if end >= 0:
        head = head[:end + 2]
    try:
        parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head)
    except Exception:
        return "", ""
    return _header(parsed, "Subject"), _header(parsed, "From")


def _header(parsed, name: str) -> str:
    try:
        value = parsed.get(name)
    except Exception:  # a field the email package cannot decode
        return ""
    return "" if value is None else " ".join(str(value).split())


async def _find_message(session: AsyncSession, user_id: int, mailbox: str,
                        uid: int) -> Message:
    box = await get_mailbox(session, user_id, mailbox)
    message = (await session.execute(
        select(Message).where(Message.mailbox_id == box.id, Message.uid == uid)
    )).scalar_one_or_none()
    if message is None:
        raise MessageNotFound(f"no message with UID {uid} in {box.name}")
    return message


async def message_bytes(session: AsyncSession, user_id: int, mailbox: str, uid: int) -> bytes:
    """The stored bytes of a message: its header prefix followed by the shared blob (its
    chunks joined in order when chunked; `mda.store.blobs.blob_bytes`).

    Raises:
        InvalidMailboxName, MailboxNotFound, MessageNotFound.
        StoreError: the blob's chunks do not add up to its size.
    """
    message = await _find_message(session, user_id, mailbox, uid)
    return await blob_bytes(session, message.blob_id, bytes(message.header_prefix))


async def delete_message(session: AsyncSession, user_id: int, mailbox: str, uid: int) -> int:
    """Delete a message, give back its quota, drop the blob when no copy is left.

    Args:
        session: a write session.
        user_id: the owner.
        mailbox: the mailbox name.
        uid: the message's UID.

    Returns:
        The bytes freed (its size as stored).

    Raises:
        InvalidMailboxName, MailboxNotFound, MessageNotFound.
    """
    message = await _find_message(session, user_id, mailbox, uid)
    await session.execute(delete(Message).where(Message.id == message.id))
    await release_quota(session, user_id, message.size)
    await release_blob(session, message.blob_id)
    return message.size


