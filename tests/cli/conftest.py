"""CLI fixtures: a migrated database for the real `mda` subprocess, and helpers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from mda.store import Store, append_message, ensure_mailbox, get_user
from mda.store.blobs import store_blob
from tests.conftest import MDA_BIN, clone_database, database_template

Run = Callable[..., subprocess.CompletedProcess[bytes]]


def _db_upgrade(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDA_")}
    env["MDA_DATABASE_URL"] = url
    proc = subprocess.run([MDA_BIN, "db", "upgrade"], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a database made by `mda db upgrade` once per session, copied by `cli`."""
    with database_template(tmp_path_factory.mktemp("template"), _db_upgrade) as url:
        yield url


@pytest.fixture
def cli(mda: Run, database_url: str, migrated_template: str) -> Run:
    """`mda` on a database brought up to date by `mda db upgrade` (a copy of the template)."""
    clone_database(migrated_template, database_url)
    return mda


def as_json(proc: subprocess.CompletedProcess[bytes]) -> Any:
    """The JSON a successful command printed."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """The command failed with exactly one line `mda: error: ...` and no traceback."""
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("mda: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


def store_messages(url: str, address: str, items: list[tuple[str, bytes, frozenset[str]]],
                   prefix: bytes = b"Delivered-To: test\r\n") -> None:
    """Put messages (mailbox, bytes, flags) into a user's mailboxes through the store API."""

    async def run() -> None:
        async with Store(url) as store:
            for mailbox, data, flags in items:
                async with store.transaction() as session:
                    blob = await store_blob(session, data)
                async with store.transaction() as session:
                    owner = await get_user(session, address)
                    box = await ensure_mailbox(session, owner.id, mailbox)
                    await append_message(session, user_id=owner.id, mailbox=box, blob_id=blob,
                                         blob_size=len(data), header_prefix=prefix,
                                         flags=flags, internal_date=datetime.now(UTC))

    asyncio.run(run())
