"""A real LMTP listener on a free port, in the test's event loop, in front of a recording
delivery layer whose answers depend on the recipient's local part:

- `unknown...@` is refused at RCPT with 550 5.1.1, `full...@` with the over-quota reply;
- after DATA, `reject...@` gets 550 5.7.1, `quota...@` 552 5.2.2, everyone else 250;
- a recipient `boom...@` makes `deliver` raise (an exception in our code), and `short...@`
  makes it return one outcome too few (a broken contract).

It records every `Transaction` it got, so tests can check the exact bytes that reached the
delivery layer. The end-to-end tests (`tests/e2e/`) use the real delivery layer and store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mda import replies
from mda.config import Settings
from mda.delivery import RecipientOutcome, Transaction
from mda.lmtp import ConnectionRegistry, DeliveryHandler
from mda.replies import Reply
from mda.server import ListenAddress, start_listener
from tests.lmtp.client import LMTPClient

MAX_SIZE = 4096


class RecordingDeliverer:
    """The delivery contract (`check_recipient`, `deliver`) answering by local part."""

    def __init__(self) -> None:
        self.transactions: list[Transaction] = []
        self.checked: list[str] = []
        self.delay = 0.0

    async def check_recipient(self, address: str, queue_id: str = "") -> Reply | None:
        self.checked.append(address)
        local = address.split("@")[0]
        if local.startswith("unknown"):
            return replies.unknown_user(address)
        if local.startswith("full"):
            return replies.over_quota(address, tempfail=False)
        if local.startswith("rcptboom"):
            raise RuntimeError("secret internal detail")
        return None

    async def deliver(self, transaction: Transaction) -> list[RecipientOutcome]:
        self.transactions.append(transaction)
        if self.delay:
            await asyncio.sleep(self.delay)
        locals_ = [rcpt.split("@")[0] for rcpt in transaction.recipients]
        if any(local.startswith("boom") for local in locals_):
            raise RuntimeError("secret internal detail")
        outcomes = []
        for rcpt, local in zip(transaction.recipients, locals_):
            if local.startswith("reject"):
                reply, result = replies.sieve_reject(rcpt, "go away"), "rejected"
            elif local.startswith("quota"):
                reply, result = replies.over_quota(rcpt, tempfail=False), "over_quota"
            else:
                reply, result = replies.delivered(rcpt), "stored"
            outcomes.append(RecipientOutcome(recipient=rcpt, reply=reply, result=result,
                                             mailboxes=("INBOX",) if result == "stored" else (),
                                             elapsed_ms=0.1))
        if any(local.startswith("short") for local in locals_):
            outcomes.pop()
        return outcomes


@dataclass
class Listener:
    """The running listener: where it is, its deliverer and registry."""

    host: str
    port: int
    deliverer: RecordingDeliverer
    registry: ConnectionRegistry
    clients: list[LMTPClient] = field(default_factory=list)

    async def client(self, lhlo: bool = True) -> LMTPClient:
        """A connected client (after LHLO unless `lhlo=False`)."""
        client = await LMTPClient.connect(self.host, self.port)
        self.clients.append(client)
        if lhlo:
            reply = await client.lhlo()
            assert reply.code == 250, reply
        return client


@asynccontextmanager
async def open_listener(settings: Settings) -> AsyncIterator[Listener]:
    """A real LMTP listener on 127.0.0.1 (free port) with `settings`, closed on exit."""
    deliverer = RecordingDeliverer()
    registry = ConnectionRegistry()
    handler = DeliveryHandler(deliverer, settings.max_message_size)  # type: ignore[arg-type]
    server, where = await start_listener(ListenAddress(host="127.0.0.1", port=0), registry,
                                         handler, settings)
    port = server.sockets[0].getsockname()[1]
    running = Listener("127.0.0.1", port, deliverer, registry)
    try:
        yield running
    finally:
        for client in running.clients:
            await client.close()
        server.close()
        registry.abort()
        await registry.wait_idle(5)


def listener_settings(tmp_path: Path, **extra: Any) -> Settings:
    """Settings for `open_listener`: hostname mx.test, max message size 4096 bytes."""
    return Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.sqlite3'}",
                    hostname="mx.test", max_message_size=MAX_SIZE, **extra)


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    """A real LMTP listener on 127.0.0.1 (free port), max message size 4096 bytes."""
    async with open_listener(listener_settings(tmp_path)) as running:
        yield running
