"""Initial schema: users, mailboxes, shared message blobs, messages, Sieve scripts and errors.

Revision ID: 0001
Revises:
Create Date: 2026-11-29

Written to stand alone: it uses plain SQLAlchemy types (no imports from `mda`), so later
changes to the models cannot change what this revision creates.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("storage_limit", sa.BigInteger(), nullable=True),
        sa.Column("messages_limit", sa.BigInteger(), nullable=True),
        sa.Column("storage_used", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("messages_used", sa.BigInteger(), server_default=sa.text("0"),
                  nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("address", name=op.f("uq_users_address")),
    )
    op.create_table(
        "message_blobs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("refcount", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_blobs")),
    )
    op.create_table(
        "mailboxes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=1000), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uidnext", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("special_use", sa.String(length=32), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_mailboxes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailboxes")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_mailboxes_user_id_name")),
    )
    op.create_table(
        "messages",
        sa.Column("id", BigId, nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("blob_id", BigId, nullable=False),
        sa.Column("header_prefix", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("flags", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("internal_date", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["message_blobs.id"], ondelete="RESTRICT",
                                name=op.f("fk_messages_blob_id_message_blobs")),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE",
                                name=op.f("fk_messages_mailbox_id_mailboxes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("mailbox_id", "uid", name=op.f("uq_messages_mailbox_id_uid")),
    )
    op.create_index(op.f("ix_messages_blob_id"), "messages", ["blob_id"])
    op.create_table(
        "sieve_scripts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_sieve_scripts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sieve_scripts")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_sieve_scripts_user_id_name")),
    )
    # At most one active script per user (RFC 5804 §1.4), enforced by the database.
    op.create_index("uq_sieve_scripts_one_active", "sieve_scripts", ["user_id"], unique=True,
                    sqlite_where=sa.text("active"), postgresql_where=sa.text("active"))
    op.create_table(
        "sieve_errors",
        sa.Column("id", BigId, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("script_name", sa.String(length=512), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("queue_id", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_sieve_errors_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sieve_errors")),
    )
    op.create_index(op.f("ix_sieve_errors_user_id"), "sieve_errors", ["user_id"])


def downgrade() -> None:
    op.drop_table("sieve_errors")
    op.drop_table("sieve_scripts")
    op.drop_table("messages")
    op.drop_table("mailboxes")
    op.drop_table("message_blobs")
    op.drop_table("users")
