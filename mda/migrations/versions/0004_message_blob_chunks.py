"""Large message blobs are stored in chunks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14

- `message_blob_chunks`: the bytes of a large blob in pieces, numbered from 0 by `seq`;
  primary key (blob_id, seq); deleted with their blob (ON DELETE CASCADE). Writing a blob
  piece by piece binds one piece per statement, so neither the driver nor the database
  client library holds a second copy of a whole large message.
- `message_blobs.chunked` (false for every existing blob): true when the blob's bytes are
  its chunks and its `data` is empty.

Existing blobs stay as they are (in `data`); only blobs written from now on are chunked.

Downgrade puts the bytes of every chunked blob back into its `data` column (one blob at a
time), then drops the table and the column: no message is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("message_blobs", sa.Column("chunked", sa.Boolean(), server_default=sa.false(),
                                             nullable=False))
    op.create_table(
        "message_blob_chunks",
        sa.Column("blob_id", BigId, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["message_blobs.id"], ondelete="CASCADE",
                                name=op.f("fk_message_blob_chunks_blob_id_message_blobs")),
        sa.PrimaryKeyConstraint("blob_id", "seq", name=op.f("pk_message_blob_chunks")),
    )


def downgrade() -> None:
    bind = op.get_bind()
    blobs = sa.table("message_blobs", sa.column("id", BigId), sa.column("data", sa.LargeBinary),
                     sa.column("chunked", sa.Boolean))
    chunks = sa.table("message_blob_chunks", sa.column("blob_id", BigId),
                      sa.column("seq", sa.Integer), sa.column("data", sa.LargeBinary))
    ids = bind.execute(sa.select(blobs.c.id).where(blobs.c.chunked)
                       .order_by(blobs.c.id)).scalars().all()
    for blob_id in ids:
        pieces = bind.execute(sa.select(chunks.c.data).where(chunks.c.blob_id == blob_id)
                              .order_by(chunks.c.seq)).scalars().all()
        data = b"".join(pieces)
        del pieces
        bind.execute(sa.update(blobs).where(blobs.c.id == blob_id)
                     .values(data=data, chunked=False))
    op.drop_table("message_blob_chunks")
    op.drop_column("message_blobs", "chunked")
