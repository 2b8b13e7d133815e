"""ORM models of mda's schema (SQLAlchemy 2 declarative, typed).

The schema itself is created and changed only by the alembic revisions in `migrations/`;
these classes must describe the same tables (a test compares them).

Tables:
- `users`: address (local part as given, domain lower-cased; unique), password hash, quota
  limits (NULL = unlimited) and usage counters kept equal to the sum over stored messages.
- `mailboxes`: per user, unique name; `uidvalidity` and `uidnext` (RFC 3501 §2.3.1.1).
- `message_blobs`: the bytes of one LMTP transaction's message, stored once and shared by
  every recipient's copy; `refcount` counts the `messages` rows pointing at it. A blob over
  `mda.store.blobs.CHUNK_THRESHOLD` bytes is `chunked`: its `data` is empty and its bytes are
  the rows of `message_blob_chunks`.
- `message_blob_chunks`: the bytes of a chunked blob in pieces of
  `mda.store.blobs.CHUNK_SIZE` (the last may be shorter), numbered from 0 by `seq`; deleted
  with their blob (ON DELETE CASCADE; SQLite connections turn foreign keys on).
- `messages`: one stored copy: mailbox, UID (unique per mailbox), blob, the per-recipient
  header prefix (Return-Path, Delivered-To, Received), size as stored (prefix + blob, what
  quota counts), flags, internal date.
- `sieve_scripts`: per user, unique name, at most one active (partial unique index).
- `sieve_errors`: the per-user log of Sieve compile and runtime errors met at delivery.
- `sieve_duplicates`: the duplicate-tracking records of the Sieve duplicate test (RFC 7352
  §3): per user, the hex SHA-256 key of (handle, :last, unique ID) and when it expires;
  redirect records (one per message and target, so a message is redirected once) share it.
- `sieve_vacation_replies`: the vacation replies sent (RFC 5230 §4.2): per user, the hex
  SHA-256 key of (handle, sender), the sender, and when the no-second-reply period ends.

Relationships are `lazy="raise"`: every load is explicit, so no implicit IO happens under
asyncio.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC; always read back aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the constraint naming convention the migrations use."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A mail user: address, quota limits (None = unlimited) and usage counters."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    storage_limit: Mapped[int | None] = mapped_column(BigInteger)
    messages_limit: Mapped[int | None] = mapped_column(BigInteger)
    storage_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    messages_used: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    mailboxes: Mapped[list[Mailbox]] = relationship(
        back_populates="user", lazy="raise", passive_deletes=True)

    @property
    def quota_full(self) -> bool:
        """True when not even one more byte or message fits (the RCPT-time quota check)."""
        return ((self.storage_limit is not None and self.storage_used >= self.storage_limit)
                or (self.messages_limit is not None
                    and self.messages_used >= self.messages_limit))


class Mailbox(Base):
    """A user's mailbox with its IMAP UID state (RFC 3501 §2.3.1.1)."""

    __tablename__ = "mailboxes"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1000))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uidnext: Mapped[int] = mapped_column(BigInteger, default=1, server_default=text("1"))
    special_use: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="mailboxes", lazy="raise")


class MessageBlob(Base):
    """The message bytes of one LMTP transaction, shared by its recipients' copies.

    `data` holds the bytes, or is empty when `chunked` (the bytes are then the blob's
    `MessageBlobChunk` rows in `seq` order); `size` is the length in bytes either way.
    """

    __tablename__ = "message_blobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    refcount: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    chunked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class MessageBlobChunk(Base):
    """One piece of a chunked blob: bytes `seq * CHUNK_SIZE` onwards (seq from 0)."""

    __tablename__ = "message_blob_chunks"

    blob_id: Mapped[int] = mapped_column(
        ForeignKey("message_blobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Message(Base):
    """One stored copy of a message in a mailbox."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("mailbox_id", "uid"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    uid: Mapped[int] = mapped_column(BigInteger)
    blob_id: Mapped[int] = mapped_column(
        ForeignKey("message_blobs.id", ondelete="RESTRICT"), index=True)
    header_prefix: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    internal_date: Mapped[datetime] = mapped_column(UTCDateTime)

    blob: Mapped[MessageBlob] = relationship(lazy="raise")


class SieveScript(Base):
    """A user's Sieve script; at most one per user is active."""

    __tablename__ = "sieve_scripts"
    __table_args__ = (
        UniqueConstraint("user_id", "name"),
        Index("uq_sieve_scripts_one_active", "user_id", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(512))
    source: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SieveError(Base):
    """One Sieve compile or runtime error met while delivering to the user."""

    __tablename__ = "sieve_errors"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    script_name: Mapped[str | None] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(16))
    queue_id: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)


class SieveDuplicate(Base):
    """A duplicate-tracking record (RFC 7352 §3): this key was seen until `expires_at`."""

    __tablename__ = "sieve_duplicates"
    __table_args__ = (UniqueConstraint("user_id", "key_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SieveVacationReply(Base):
    """A vacation reply sent (RFC 5230 §4.2): `sender` gets no second reply for the same
    handle until `expires_at`."""

    __tablename__ = "sieve_vacation_replies"
    __table_args__ = (UniqueConstraint("user_id", "key_hash"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(320))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
