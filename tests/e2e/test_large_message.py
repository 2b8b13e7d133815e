"""Large messages through a real `mda serve`: a message over the chunking threshold
(`mda.store.blobs.CHUNK_THRESHOLD`) is delivered over LMTP (DATA and BDAT, several
recipients, Sieve scripts that file, test the body and edit the header), read back with
`mda message show` byte for byte (SHA-256), listed with its Subject and From, and deleted
with its chunks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from mda.store import Store
from mda.store.blobs import CHUNK_SIZE, CHUNK_THRESHOLD
from mda.store.models import MessageBlob, MessageBlobChunk
from tests.e2e.conftest import ServerProcess, write
from tests.lmtp import statuscodes as S
from tests.lmtp.client import split_chunks

Run = Callable[..., subprocess.CompletedProcess[bytes]]

FILE_AND_EDIT = b"""require ["fileinto", "mailbox", "body", "editheader"];
if body :text :contains "needle" { addheader "X-Found" "needle"; fileinto :create "Found"; }
"""


def large_message(size: int) -> bytes:
    """A multipart message of about `size` bytes: a text part with a needle, then a base64
    attachment of random bytes in 76-character lines."""
    head = (b"From: Big Sender <big@example.net>\r\nSubject: a large one\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain\r\n\r\nthe needle is here\r\n"
            b"--XX\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n")
    attachment = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return head + attachment + b"--XX--\r\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listing(mda: Run, user: str) -> list[dict]:
    return json.loads(mda("message", "list", user, "--json", check=True).stdout)


def shown(mda: Run, user: str, mailbox: str, uid: int) -> bytes:
    return mda("message", "show", user, mailbox, str(uid), check=True).stdout


def split_prefix(stored: bytes) -> tuple[bytes, bytes]:
    """(the header prefix mda added, the rest): the prefix is the Return-Path,
    Delivered-To and Received lines."""
    assert stored.startswith(b"Return-Path: ")
    end = stored.index(b"\r\n\tfor <")
    end = stored.index(b"\r\n", end + 2) + 2
    return stored[:end], stored[end:]


async def chunk_counts(url: str) -> tuple[int, int]:
    """(blobs, chunks) in the database."""
    async with Store(url) as store:
        async with store.read() as session:
            blobs = (await session.execute(select(func.count(MessageBlob.id)))).scalar_one()
            chunks = (await session.execute(
                select(func.count()).select_from(MessageBlobChunk))).scalar_one()
    return blobs, chunks


async def test_large_message_over_data_and_bdat_reads_back_identical(
        mda: Run, start_server: Callable[..., ServerProcess], mda_env: dict[str, str],
        tmp_path: Path) -> None:
    message = large_message(3 * CHUNK_SIZE + 12345)
    assert len(message) > CHUNK_THRESHOLD
    mda("db", "upgrade", check=True)
    for user in ("ann@example.org", "bob@example.org", "cat@example.org"):
        mda("user", "add", user, "--quota-storage", "100M", check=True)
    mda("sieve", "put", "bob@example.org", "edit", write(tmp_path, "edit.sieve", FILE_AND_EDIT),
        "--activate", check=True)
    server = start_server()

    client = await server.client()
    try:
        result = await client.transaction("big@example.net",
                                          ["ann@example.org", "bob@example.org"], message)
        assert [r.status for r in result.after_data] == [S.DELIVERED, S.DELIVERED]
        chunked = await client.bdat_transaction("big@example.net", ["cat@example.org"],
                                                split_chunks(message, 3))
        assert [r.status for r in chunked.after_data] == [S.DELIVERED]
    finally:
        await client.quit()

    [ann] = listing(mda, "ann@example.org")
    ann_prefix, ann_rest = split_prefix(shown(mda, "ann@example.org", "INBOX", ann["uid"]))
    assert sha(ann_rest) == sha(message)
    assert ann["size"] == len(ann_prefix) + len(message)
    assert (ann["subject"], ann["from"]) == ("a large one", "Big Sender <big@example.net>")

    [bob] = listing(mda, "bob@example.org")  # the body test found the needle
    assert (bob["mailbox"], bob["subject"]) == ("Found", "a large one")
    _, bob_rest = split_prefix(shown(mda, "bob@example.org", "Found", bob["uid"]))
    assert sha(bob_rest) == sha(b"X-Found: needle\r\n" + message)

    [cat] = listing(mda, "cat@example.org")
    _, cat_rest = split_prefix(shown(mda, "cat@example.org", "INBOX", cat["uid"]))
    assert sha(cat_rest) == sha(message)

    # one blob for the DATA transaction, one for bob's edited version, one for BDAT
    def chunks(size: int) -> int:
        return -(-size // CHUNK_SIZE)

    url = mda_env["MDA_DATABASE_URL"]
    assert await chunk_counts(url) == (
        3, 2 * chunks(len(message)) + chunks(len(b"X-Found: needle\r\n" + message)))
    for user, box, uid in (("ann@example.org", "INBOX", ann["uid"]),
                           ("bob@example.org", "Found", bob["uid"]),
                           ("cat@example.org", "INBOX", cat["uid"])):
        mda("message", "delete", user, box, str(uid), check=True)
    assert await chunk_counts(url) == (0, 0)
    assert server.proc.poll() is None


async def test_bare_line_feeds_in_a_large_message_are_stored_as_crlf(
        mda: Run, start_server: Callable[..., ServerProcess]) -> None:
    message = large_message(2 * CHUNK_SIZE)
    mda("db", "upgrade", check=True)
    mda("user", "add", "ann@example.org", check=True)
    server = start_server()
    client = await server.client()
    try:
        result = await client.transaction("big@example.net", ["ann@example.org"],
                                          message.replace(b"\r\n", b"\n"))
    finally:
        await client.quit()
    assert [r.status for r in result.after_data] == [S.DELIVERED]
    [ann] = listing(mda, "ann@example.org")
    _, rest = split_prefix(shown(mda, "ann@example.org", "INBOX", ann["uid"]))
    assert sha(rest) == sha(message)
