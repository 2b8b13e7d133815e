"""The Sieve `Host` of a delivery: what the engine asks about one user, answered from the store.

Evaluation runs in a worker thread (it must never block the event loop), and the engine's
questions are synchronous. The host answers:

- from facts pre-fetched in the delivery's read (the user's mailboxes and their special-use
  attributes): `mailbox_exists` (RFC 5490 §3.1), `special_use_exists` (RFC 8579 §3),
  `special_use_mailbox` (RFC 8579 §4);
- from the files of `GlobalScripts`: `include_script(name, "global")` (RFC 6609 §3.2);
- by asking the store on the event loop, only when the script really asks, and waiting for
  the answer in the worker thread: `include_script(name, "personal")` (the user's stored
  scripts) and `duplicate_seen` (RFC 7352 §3, the `sieve_duplicates` table).

A store failure while answering propagates out of the evaluation, and delivery answers
that recipient `451 4.3.0` (nothing was written).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TypeVar

from mda.delivery.scripts import GlobalScripts
from mda.store import (
    InvalidInput,
    NotFound,
    Session,
    Store,
    duplicate_seen,
    get_script,
    normalize_mailbox_name,
)

T = TypeVar("T")

ASK_TIMEOUT = 60.0  # seconds a worker thread waits for the store's answer


class DeliveryHost:
    """Answers the engine's questions for one recipient (see the module docstring).

    Args:
        store: the store, for the questions asked on the event loop.
        loop: the event loop the store runs on (the delivery's loop).
        user_id: the user the script runs for.
        special_uses: the user's mailboxes, `{name: special-use attribute or None}`, oldest
            first (`mda.store.mailbox_special_uses`).
        scripts: the global scripts.
        now: the delivery time (aware); duplicate records expiring after it are current.
    """

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop, user_id: int,
                 special_uses: Mapping[str, str | None], scripts: GlobalScripts,
                 now: datetime) -> None:
        self.store = store
        self.loop = loop
        self.user_id = user_id
        self.special_uses = dict(special_uses)
        self.scripts = scripts
        self.now = now

    # ---------------------------------------------------------------- pre-fetched

    def mailbox_exists(self, name: str) -> bool:
        """RFC 5490 §3.1: whether the user has mailbox `name` (INBOX in any case)."""
        try:
            return normalize_mailbox_name(name) in self.special_uses
        except InvalidInput:
            return False

    def special_use_exists(self, mailbox: str | None, uses: tuple[str, ...]) -> bool:
        """RFC 8579 §3: does `mailbox` (None: some mailbox of the user, per attribute)
        carry every one of these attributes? Compared case-insensitively."""
        wanted = {use.lower() for use in uses}
        if mailbox is None:
            present = {use.lower() for use in self.special_uses.values() if use}
            return wanted <= present
        try:
            name = normalize_mailbox_name(mailbox)
        except InvalidInput:
            return False
        if name not in self.special_uses:
            return False
        own = self.special_uses[name]
        return wanted <= ({own.lower()} if own else set())

    def special_use_mailbox(self, use: str) -> str | None:
        """RFC 8579 §4: the user's (oldest) mailbox with this attribute, or None."""
        lowered = use.lower()
        return next((name for name, own in self.special_uses.items()
                     if own and own.lower() == lowered), None)

    # ---------------------------------------------------------------- asked on demand

    def include_script(self, name: str, location: str) -> str | bytes | None:
        """RFC 6609 §3.2: the source of a personal script (the user's stored scripts) or a
        global one (`sieve_scripts/global/NAME.sieve`); None when there is none."""
        if location == "global":
            return self.scripts.include(name)
        return self._ask(lambda session: self._personal(session, name))

    async def _personal(self, session: Session, name: str) -> str | None:
        try:
            return (await get_script(session, self.user_id, name)).source
        except (NotFound, InvalidInput):
            return None

    def duplicate_seen(self, key: str, period: int) -> bool:
        """RFC 7352 §3: is an unexpired record with this key stored for the user?

        Args:
            key: the engine's `DuplicateMark.id_hash`.
            period: the test's period in seconds (records store their expiry, so unused).
        """
        return self._ask(lambda session: duplicate_seen(session, self.user_id, key, self.now))

    def _ask(self, question: Callable[[Session], Awaitable[T]]) -> T:
        """Run `question` in a read session on the event loop and wait for its answer.

        Raises:
            StoreUnavailable, StoreError: the store failed (delivery answers 451).
            TimeoutError: no answer within `ASK_TIMEOUT` seconds.
        """
        async def read() -> T:
            async with self.store.read() as session:
                return await question(session)

        return asyncio.run_coroutine_threadsafe(read(), self.loop).result(ASK_TIMEOUT)


__all__ = ["ASK_TIMEOUT", "DeliveryHost"]
