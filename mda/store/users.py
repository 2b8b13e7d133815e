"""Users, their password hashes and their quota.

Quota is enforced in SQL, atomically, in the caller's transaction: `charge_quota` is one
conditional `UPDATE users SET storage_used = storage_used + :n, messages_used =
messages_used + 1 WHERE id = :u AND <limits allow> RETURNING ...`. Two deliveries racing for
the last bytes cannot both succeed (PostgreSQL re-checks the WHERE clause on the locked row;
SQLite has one writer at a time), and the counters move in the same transaction as the
message row, so they always equal the sum of the stored sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mda.store.blobs import release_blob
from mda.store.errors import InvalidInput, QuotaExceeded, UserExists, UserNotFound
from mda.store.mailboxes import create_mailbox
from mda.store.models import Mailbox, Message, User
from mda.store.names import DEFAULT_SPECIAL_MAILBOXES, INBOX, normalize_address


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()
"""Marker for `set_quota`: leave this limit as it is."""


@dataclass(frozen=True, slots=True)
class QuotaUsage:
    """A user's quota counters and limits.

    Attributes:
        storage_used: bytes as stored, headers mda added included.
        storage_limit: bytes allowed, None = unlimited.
        messages_used: messages stored.
        messages_limit: messages allowed, None = unlimited.
    """

    storage_used: int
    storage_limit: int | None
    messages_used: int
    messages_limit: int | None

    @classmethod
    def of(cls, user: User) -> QuotaUsage:
        """The usage recorded on a loaded `User` row."""
        return cls(user.storage_used, user.storage_limit, user.messages_used, user.messages_limit)


async def add_user(session: AsyncSession, address: str, *, storage_limit: int | None = None,
                   messages_limit: int | None = None) -> User:
    """Create a user with an INBOX and the special-use mailboxes Junk, Trash, Sent, Drafts
    and Archive (RFC 6154 §2, `DEFAULT_SPECIAL_MAILBOXES`).

    Args:
        session: a write session.
        address: the user's address; stored with the domain lower-cased.
        storage_limit: bytes allowed, None = unlimited.
        messages_limit: messages allowed, None = unlimited.

    Returns:
        The new user.

    Raises:
        InvalidAddress: the address is malformed.
        ValueError: a limit is negative.
        UserExists: a user with this address exists.
    """
    canonical = normalize_address(address)
    _check_limit("storage limit", storage_limit)
    _check_limit("message limit", messages_limit)
    if await find_user(session, canonical) is not None:
        raise UserExists(f"user {canonical} already exists")
    user = User(address=canonical, storage_limit=storage_limit, messages_limit=messages_limit,
                storage_used=0, messages_used=0)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent add of the same address won the race
        raise UserExists(f"user {canonical} already exists") from exc
    await create_mailbox(session, user.id, INBOX)
    for name, special_use in DEFAULT_SPECIAL_MAILBOXES:
        await create_mailbox(session, user.id, name, special_use=special_use)
    return user


def _check_limit(what: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{what} must not be negative: {value}")


async def find_user(session: AsyncSession, address: str) -> User | None:
    """The user with this address, or None.

    Args:
        session: any session.
        address: the address; the domain is compared case-insensitively.

    Returns:
        The user or None.

    Raises:
        InvalidAddress: the address is malformed.
    """
    canonical = normalize_address(address)
    return (await session.execute(
        select(User).where(User.address == canonical))).scalar_one_or_none()


async def get_user(session: AsyncSession, address: str) -> User:
    """The user with this address.

    Raises:
        InvalidAddress: the address is malformed.
        UserNotFound: no such user.
    """
    user = await find_user(session, address)
    if user is None:
        raise UserNotFound(f"no user {normalize_address(address)}")
    return user


async def list_users(session: AsyncSession) -> list[User]:
    """All users, ordered by address."""
    return list((await session.execute(select(User).order_by(User.address))).scalars())


async def delete_user(session: AsyncSession, address: str) -> None:
    """Delete a user with all mailboxes, messages, scripts and logged errors.

    Blobs shared with other users' copies lose one reference per deleted copy; blobs left
    without references are deleted.

    Raises:
        InvalidAddress: the address is malformed.
        UserNotFound: no such user.
    """
    user = await get_user(session, address)
    copies = (select(Message.blob_id, func.count().label("n"))
              .join(Mailbox, Message.mailbox_id == Mailbox.id)
              .where(Mailbox.user_id == user.id)
              .group_by(Message.blob_id))
    counts = (await session.execute(copies)).all()
    mailbox_ids = select(Mailbox.id).where(Mailbox.user_id == user.id).scalar_subquery()
    await session.execute(delete(Message).where(Message.mailbox_id.in_(mailbox_ids)))
    for blob_id, n in counts:
        await release_blob(session, blob_id, n)
    await session.execute(delete(User).where(User.id == user.id))


async def set_quota(session: AsyncSession, address: str, *,
                    storage_limit: int | None | _Unchanged = UNCHANGED,
                    messages_limit: int | None | _Unchanged = UNCHANGED) -> User:
    """Change a user's limits. Usage above a lowered limit is kept (nothing is deleted);
    further deliveries are refused until usage drops below it.

    Args:
        session: a write session.
        address: the user's address.
        storage_limit: bytes allowed, None = unlimited, UNCHANGED = keep.
        messages_limit: messages allowed, None = unlimited, UNCHANGED = keep.

    Returns:
        The user with the new limits.

    Raises:
        InvalidAddress, UserNotFound, ValueError (negative limit).
    """
    user = await get_user(session, address)
    values: dict[str, int | None] = {}
    if not isinstance(storage_limit, _Unchanged):
        _check_limit("storage limit", storage_limit)
        values["storage_limit"] = storage_limit
    if not isinstance(messages_limit, _Unchanged):
        _check_limit("message limit", messages_limit)
        values["messages_limit"] = messages_limit
    if values:
        await session.execute(update(User).where(User.id == user.id).values(**values))
        await session.refresh(user)
    return user


#: The width of `users.password_hash`, characters.
MAX_PASSWORD_HASH = 255


async def set_password_hash(session: AsyncSession, address: str,
                            password_hash: str | None) -> User:
    """Store a user's password hash, or remove it (the user then cannot log in).

    The store keeps the string as given and does not look inside it: callers make it with
    `mda.passwords.hash_password` or check an imported one with `mda.passwords.check_scheme`.

    Args:
        session: a write session.
        address: the user's address.
        password_hash: the stored form, `{SCHEME}encoded`; None removes the password.

    Returns:
        The user with the new hash.

    Raises:
        InvalidAddress: the address is malformed.
        UserNotFound: no such user.
        InvalidInput: the hash is empty or longer than 255 characters.
    """
    if password_hash is not None:
        if not password_hash:
            raise InvalidInput("empty password hash (pass None to remove the password)")
        if len(password_hash) > MAX_PASSWORD_HASH:
            raise InvalidInput(f"password hash longer than {MAX_PASSWORD_HASH} characters")
    user = await get_user(session, address)
    await session.execute(update(User).where(User.id == user.id)
                          .values(password_hash=password_hash))
    await session.refresh(user)
    return user


async def lock_user(session: AsyncSession, user_id: int) -> None:
    """Hold the user's row lock until the caller's write transaction ends (PostgreSQL
    `SELECT ... FOR UPDATE`; on SQLite, BEGIN IMMEDIATE already serialises every writer).

    A delivery takes it before anything else, so of two concurrent transactions for one user
    (in one mda or in several on one database) the second waits before it has touched
    anything. Without it, two deliveries creating the same new mailboxes in opposite orders,
    or one creating a mailbox the other then needs while holding the quota row, wait for each
    other, and PostgreSQL aborts one of them as a deadlock.

    Args:
        session: a write session.
        user_id: the user's id.

    Raises:
        UserNotFound: the user no longer exists.
    """
    found = (await session.execute(
        select(User.id).where(User.id == user_id).with_for_update())).scalar_one_or_none()
    if found is None:
        raise UserNotFound(f"no user with id {user_id}")


async def charge_quota(session: AsyncSession, user_id: int, size: int,
                       messages: int = 1) -> QuotaUsage:
    """Count `size` bytes and `messages` messages against the user's quota, if they fit.

    One conditional UPDATE ... RETURNING in the caller's transaction; see the module text.

    Args:
        session: the write session that also stores the message rows.
        user_id: the user's id.
        size: bytes to add (as stored).
        messages: messages to add.

    Returns:
        The usage after the charge.

    Raises:
        QuotaExceeded: a limit would be exceeded; nothing was changed.
        UserNotFound: the user no longer exists.
    """
    storage_ok = (User.storage_limit.is_(None)
                  | (User.storage_used + size <= User.storage_limit))
    messages_ok = (User.messages_limit.is_(None)
                   | (User.messages_used + messages <= User.messages_limit))
    row = (await session.execute(
        update(User)
        .where(User.id == user_id, storage_ok, messages_ok)
        .values(storage_used=User.storage_used + size,
                messages_used=User.messages_used + messages)
        .returning(User.storage_used, User.storage_limit,
                   User.messages_used, User.messages_limit)
        .execution_options(synchronize_session=False))).one_or_none()
    if row is not None:
        return QuotaUsage(*row)
    user = (await session.execute(select(User).where(User.id == user_id))).scalar_one_or_none()
    if user is None:
        raise UserNotFound(f"no user with id {user_id}")
    await session.refresh(user)
    raise QuotaExceeded(user.address, size, user.storage_used, user.storage_limit,
                        user.messages_used, user.messages_limit)


async def release_quota(session: AsyncSession, user_id: int, size: int,
                        messages: int = 1) -> None:
    """Give back the quota of deleted messages, in the transaction that deletes them.

    Args:
        session: the write session that deletes the message rows.
        user_id: the user's id.
        size: bytes to subtract.
        messages: messages to subtract.
    """
    await session.execute(
        update(User).where(User.id == user_id)
        .values(storage_used=User.storage_used - size,
                messages_used=User.messages_used - messages)
        .execution_options(synchronize_session=False))


async def quota_usage(session: AsyncSession, address: str) -> QuotaUsage:
    """The quota counters and limits of a user.

    Raises:
        InvalidAddress, UserNotFound.
    """
    return QuotaUsage.of(await get_user(session, address))
