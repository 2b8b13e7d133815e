"""Stress: two `mda serve` instances on one database, driven by concurrent LMTP connections.

Two topologies, each on SQLite (two processes on one file) and on PostgreSQL: two separate
`mda serve` processes on different ports, and one `mda serve --workers 2`. Eight connections
start at the same moment and deliver to the same four users, two to four recipients per
transaction:
- `plain`: no limits, no script;
- `quota`: a storage limit that half of its mail fits into;
- `count`: a message-count limit that half of its mail fits into;
- `boxes`: `fileinto :create` into two mailboxes that do not exist yet, named by the round,
  so in every round all connections create the same two mailboxes at the same moment, half of
  them in one order and half in the other, plus `keep`.

Afterwards, from the database: every 250 after DATA has exactly one copy per expected mailbox
of that recipient, and no copy exists without a 250 (each message has its own Message-ID);
UIDs are unique and increase with insertion order in every mailbox, below UIDNEXT; no user is
over a limit and the usage counters equal the sum of the stored sizes and the count of the
stored copies; and every reply is 250 or a deliberate quota refusal (`552 5.2.2`): no 451, no
"database is locked". The figures are printed (run pytest with -s to see them).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from mda.store import Store
from mda.store.models import Mailbox, Message, MessageBlob, User
from tests.e2e.conftest import ServerProcess
from tests.lmtp import statuscodes as S
from tests.lmtp.client import TransactionResult
from tests.scale.conftest import Cli, Launch, worker_pids

DOMAIN = "stress.test"
PLAIN, QUOTA, COUNT, BOXES = (f"{name}@{DOMAIN}" for name in ("plain", "quota", "count",
                                                               "boxes"))
USERS = (PLAIN, QUOTA, COUNT, BOXES)
LIMITED = {QUOTA, COUNT}
CONNECTIONS = 8
ROUNDS = 12
BODY_LINES = 20  # 78-octet lines: about 1.8 KB per message with its header
BOXES_SCRIPT = """require ["fileinto", "mailbox", "variables"];
if header :matches "X-Folders" "*,*" {
    fileinto :create "${1}";
    fileinto :create "${2}";
}
keep;
"""


def recipients(conn: int, round_: int) -> list[str]:
    """Two to four of the users, rotating with connection and round."""
    start = (conn + round_) % len(USERS)
    rotated = USERS[start:] + USERS[:start]
    return list(rotated[:2 + (conn + round_) % 3])


def folders(conn: int, round_: int) -> tuple[str, str]:
    """The two new mailboxes of a round, in opposite orders on odd and even connections."""
    names = (f"R{round_}-A", f"R{round_}-B")
    return names if conn % 2 == 0 else names[::-1]


def message_id(conn: int, round_: int) -> str:
    return f"{conn}.{round_}@{DOMAIN}"


def message(conn: int, round_: int) -> bytes:
    head = (f"From: load@example.net\r\nTo: {', '.join(recipients(conn, round_))}\r\n"
            f"Subject: conn {conn} round {round_}\r\nMessage-ID: <{message_id(conn, round_)}>"
            f"\r\nX-Folders: {','.join(folders(conn, round_))}\r\n\r\n")
    return head.encode() + (b"y" * 76 + b"\r\n") * BODY_LINES


def expected_mailboxes(user: str, conn: int, round_: int) -> list[str]:
    """The mailboxes one accepted copy must be stored into."""
    if user == BOXES:
        return sorted([*folders(conn, round_), "INBOX"])
    return ["INBOX"]


@dataclass
class Figures:
    """What the run did and what the check found."""

    messages: int = 0
    recipients: int = 0
    delivered: int = 0
    quota_refusals: int = 0
    copies: int = 0
    mailboxes_created: int = 0
    seconds: float = 0.0
    discrepancies: list[str] = field(default_factory=list)
    accepted: set[tuple[str, str]] = field(default_factory=set)  # (Message-ID, user)
    per_worker: Counter[str] = field(default_factory=Counter)  # recipients by worker pid

    def report(self, name: str) -> str:
        return (f"\nstress {name}: {self.messages} messages, {self.recipients} recipients, "
                f"{self.delivered} delivered, {self.quota_refusals} quota refusals, "
                f"{self.copies} copies stored, {self.mailboxes_created} mailboxes created "
                f"concurrently, {self.seconds:.1f} s, "
                f"{len(self.discrepancies)} discrepancies"
                + (f"; recipients per worker {sorted(self.per_worker.values())}"
                   if self.per_worker else ""))


def judge(figures: Figures, conn: int, round_: int, rcpts: list[str],
          result: TransactionResult) -> None:
    """Count the replies of one transaction; anything but 250 or a quota refusal of a
    limited user is a discrepancy."""
    figures.messages += 1
    figures.recipients += len(rcpts)
    where = f"<{message_id(conn, round_)}>"
    if result.mail.code != 250:
        figures.discrepancies.append(f"{where}: MAIL {result.mail.status}")
        return
    accepted = []
    for rcpt, reply in zip(rcpts, result.rcpt):
        if reply.status == S.RCPT_OK:
            accepted.append(rcpt)
        elif reply.status == S.OVER_QUOTA and rcpt in LIMITED:
            figures.quota_refusals += 1
        else:
            figures.discrepancies.append(f"{where} {rcpt}: RCPT {reply.status}")
    if not accepted:
        return
    if result.data is None or result.data.code != 354:
        figures.discrepancies.append(f"{where}: DATA {result.data}")
        return
    for rcpt, reply in zip(accepted, result.after_data):
        if reply.status == S.DELIVERED:
            figures.delivered += 1
            figures.accepted.add((message_id(conn, round_), rcpt))
        elif reply.status == S.OVER_QUOTA and rcpt in LIMITED:
            figures.quota_refusals += 1
        else:
            figures.discrepancies.append(f"{where} {rcpt}: after DATA {reply.status} "
                                         f"{reply.text}")


async def drive(targets: list[ServerProcess], figures: Figures) -> None:
    """CONNECTIONS connections (spread over `targets`), ROUNDS transactions each, all
    starting together."""
    clients = [await targets[conn % len(targets)].client() for conn in range(CONNECTIONS)]
    start = asyncio.Event()

    async def run(conn: int) -> None:
        await start.wait()
        for round_ in range(ROUNDS):
            rcpts = recipients(conn, round_)
            result = await clients[conn].transaction("load@example.net", rcpts,
                                                     message(conn, round_), timeout=120)
            judge(figures, conn, round_, rcpts, result)
        await clients[conn].quit()

    tasks = [asyncio.create_task(run(conn)) for conn in range(CONNECTIONS)]
    started = time.monotonic()
    start.set()
    await asyncio.gather(*tasks)
    figures.seconds = time.monotonic() - started


_MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>", re.M | re.I)


async def check_store(db_url: str, figures: Figures) -> None:
    """Compare the database with the replies (see the module docstring)."""
    problems = figures.discrepancies
    async with Store(db_url) as store, store.read() as session:
        users = {u.address: u for u in (await session.execute(select(User))).scalars()}
        mailboxes = {m.id: m for m in (await session.execute(select(Mailbox))).scalars()}
        rows = (await session.execute(
            select(Message.id, Message.mailbox_id, Message.uid, Message.size,
                   MessageBlob.data).join(MessageBlob, Message.blob_id == MessageBlob.id)
            .order_by(Message.id))).all()
    owner = {u.id: address for address, u in users.items()}
    copies: dict[tuple[str, str], list[str]] = defaultdict(list)
    uids: dict[int, list[int]] = defaultdict(list)
    usage: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for _, mailbox_id, uid, size, data in rows:
        box = mailboxes[mailbox_id]
        user = owner[box.user_id]
        found = _MESSAGE_ID.search(bytes(data))
        assert found is not None, "a stored message lost its Message-ID"
        copies[(found.group(1).decode(), user)].append(box.name)
        uids[mailbox_id].append(uid)
        usage[user] += size
        counts[user] += 1
    figures.copies = len(rows)
    figures.mailboxes_created = sum(1 for m in mailboxes.values() if m.name.startswith("R"))

    for key in sorted(figures.accepted):
        msgid, user = key
        conn, round_ = map(int, msgid.split("@")[0].split("."))
        if sorted(copies.get(key, [])) != expected_mailboxes(user, conn, round_):
            problems.append(f"<{msgid}> {user}: stored in {sorted(copies.get(key, []))}, "
                            f"expected {expected_mailboxes(user, conn, round_)}")
    for key in sorted(set(copies) - figures.accepted):
        problems.append(f"<{key[0]}> {key[1]}: stored {copies[key]} without a 250")
    for mailbox_id, seen in uids.items():
        box = mailboxes[mailbox_id]
        if any(b <= a for a, b in zip(seen, seen[1:])) or max(seen) >= box.uidnext:
            problems.append(f"{owner[box.user_id]} {box.name}: UIDs {seen} "
                            f"(UIDNEXT {box.uidnext})")
    for address, user in users.items():
        if user.storage_used != usage[address] or user.messages_used != counts[address]:
            problems.append(f"{address}: counters {user.storage_used} bytes / "
                            f"{user.messages_used} messages, stored {usage[address]} / "
                            f"{counts[address]}")
        if user.storage_limit is not None and user.storage_used > user.storage_limit:
            problems.append(f"{address}: {user.storage_used} bytes over {user.storage_limit}")
        if user.messages_limit is not None and user.messages_used > user.messages_limit:
            problems.append(f"{address}: {user.messages_used} messages over "
                            f"{user.messages_limit}")
    for round_ in range(ROUNDS):
        for name in (f"R{round_}-A", f"R{round_}-B"):
            made = [m for m in mailboxes.values() if m.name == name]
            if len(made) != 1 or owner[made[0].user_id] != BOXES:
                problems.append(f"mailbox {name}: {len(made)} rows")


def half_of_what_arrives(user: str) -> int:
    """How many messages addressed to `user` half of would be."""
    return sum(user in recipients(c, r) for c in range(CONNECTIONS) for r in range(ROUNDS)) // 2


@pytest.mark.parametrize("topology", ["two-processes", "workers"])
async def test_concurrent_delivery_through_two_instances(
        topology: str, db_url: str, cli: Cli, launch: Launch, tmp_path: Path) -> None:
    cli("db", "upgrade")
    cli("user", "add", PLAIN)
    cli("user", "add", QUOTA, "--quota-storage",
        str(half_of_what_arrives(QUOTA) * len(message(0, 0))))
    cli("user", "add", COUNT, "--quota-messages", str(half_of_what_arrives(COUNT)))
    cli("user", "add", BOXES)
    script = tmp_path / "boxes.sieve"
    script.write_text(BOXES_SCRIPT)
    cli("sieve", "put", BOXES, "boxes", str(script), "--activate")
    if topology == "workers":
        server = launch("--workers", "2")
        workers = worker_pids(server, 2)
        servers = [server]
    else:
        servers = [launch(), launch()]

    figures = Figures()
    await drive(servers, figures)
    logs = "\n".join(server.log_text() for server in servers)
    if topology == "workers":  # recipients per worker, for the report
        figures.per_worker = Counter(re.findall(r"mda\.lmtp\[(\d+)\]: \S+ rcpt=", logs))
    for server in servers:
        assert server.stop() == 0
    await check_store(db_url, figures)

    backend = db_url.split(":", 1)[0].split("+", 1)[0]
    print(figures.report(f"{backend} {topology}"))
    for line in figures.discrepancies[:20]:
        print("  ", line)
    assert "database is locked" not in logs
    assert "Traceback" not in logs
    assert figures.discrepancies == []
    assert figures.messages == CONNECTIONS * ROUNDS
    # The run did press on the limits and on mailbox creation.
    assert figures.quota_refusals > 0 and figures.mailboxes_created == 2 * ROUNDS
    if topology == "workers":  # how the scheduler spreads them is not asserted here
        assert set(figures.per_worker) <= set(map(str, workers))  # (test_workers.py does)
