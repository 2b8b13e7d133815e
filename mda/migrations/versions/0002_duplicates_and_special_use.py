"""Sieve duplicate-tracking records; special-use mailboxes for every user.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

- `sieve_duplicates` (RFC 7352 §3): per user, the key of a handled message and when the
  record expires; unique (user_id, key_hash).
- Backfill (RFC 6154 §2): every existing user gets the mailboxes new users are created with,
  Junk (\\Junk), Trash (\\Trash), Sent (\\Sent), Drafts (\\Drafts) and Archive (\\Archive),
  unless a mailbox of the user already has that attribute. A mailbox of that name that
  exists without an attribute gets it; one with a different attribute is left alone.

Downgrade drops `sieve_duplicates`. The backfilled mailboxes stay (they are ordinary
mailboxes under revision 0001 and may hold mail by then).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)

SPECIAL_MAILBOXES = (("Junk", "\\Junk"), ("Trash", "\\Trash"), ("Sent", "\\Sent"),
                     ("Drafts", "\\Drafts"), ("Archive", "\\Archive"))


def upgrade() -> None:
    op.create_table(
        "sieve_duplicates",
        sa.Column("id", BigId, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_sieve_duplicates_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sieve_duplicates")),
        sa.UniqueConstraint("user_id", "key_hash",
                            name=op.f("uq_sieve_duplicates_user_id_key_hash")),
    )
    _backfill_special_use()


def _backfill_special_use() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    uidvalidity = int(time.time()) & 0xFFFFFFFF
    # asyncpg needs one type per parameter, also where it is used twice
    typed = (sa.bindparam("name", type_=sa.String()), sa.bindparam("use", type_=sa.String()))
    for name, use in SPECIAL_MAILBOXES:
        params = {"name": name, "use": use}
        # An existing mailbox of that name without an attribute gets it, unless another
        # mailbox of the user already carries it.
        bind.execute(sa.text(
            "UPDATE mailboxes SET special_use = :use WHERE name = :name "
            "AND special_use IS NULL AND NOT EXISTS (SELECT 1 FROM mailboxes AS other "
            "WHERE other.user_id = mailboxes.user_id AND other.special_use = :use)")
            .bindparams(*typed), params)
        bind.execute(sa.text(
            "INSERT INTO mailboxes (user_id, name, uidvalidity, uidnext, special_use, "
            "created_at) SELECT users.id, :name, :uidvalidity, 1, :use, :now FROM users "
            "WHERE NOT EXISTS (SELECT 1 FROM mailboxes WHERE mailboxes.user_id = users.id "
            "AND (mailboxes.name = :name OR mailboxes.special_use = :use))")
            .bindparams(*typed, sa.bindparam("now", type_=Timestamp)),
            {**params, "uidvalidity": uidvalidity, "now": now})


def downgrade() -> None:
    op.drop_table("sieve_duplicates")
