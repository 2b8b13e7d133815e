"""Sieve vacation reply records.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10

- `sieve_vacation_replies` (RFC 5230 §4.2, §4.1): per user, one row per (handle, sender)
  a vacation reply went to, and when the period during which that sender gets no second
  reply for that handle ends. `key_hash` is the hex SHA-256 of handle and sender; the
  sender is kept as well, for the administrator. Unique (user_id, key_hash).

Downgrade drops the table (the only cost: a sender may get a second reply early).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sieve_vacation_replies",
        sa.Column("id", BigId, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_sieve_vacation_replies_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sieve_vacation_replies")),
        sa.UniqueConstraint("user_id", "key_hash",
                            name=op.f("uq_sieve_vacation_replies_user_id_key_hash")),
    )


def downgrade() -> None:
    op.drop_table("sieve_vacation_replies")
