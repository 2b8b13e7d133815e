"""Delivery: for each accepted recipient, run the user's Sieve script and apply the result.

Per LMTP transaction (`Deliverer.deliver`):
1. The message's line endings are normalised to CRLF and it is parsed once for Sieve.
2. For each recipient, in RCPT order and isolated from the others:
   a. resolve the user (domain case-insensitive; `user+detail@dom` → `user@dom`);
   b. read the active script (else the global `default.sieve`, else none: implicit keep)
      and the user's mailbox names, in one short read;
   c. evaluate (pure, `mda.sieve`): a compile or runtime error — or a redirect, which
      cannot be sent yet — means implicit keep into INBOX, with the error recorded;
   d. apply the actions in ONE write transaction: message rows with this recipient's
      header prefix, flags, UIDs, quota (conditional UPDATE), and the error log;
   e. the reply is 250 only after that transaction committed (RFC 2033 §4.2).
3. The message bytes are stored once as a shared blob, in their own short transaction,
   the first time a recipient needs them; a blob no recipient kept is deleted at the end.

`deliver` never raises: every recipient gets exactly one outcome (`mda.delivery.errors`
maps failures to replies).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path


from mda import replies
from mda.config import Settings
from mda.delivery.errors import reply_for
from mda.delivery.headers import (
    has_header_section,
    header_prefix,
    normalize_line_endings,
    peer_address,
)
from mda.delivery.transaction import RecipientOutcome, Transaction
from mda.replies import Reply
from mda.sieve import (
    Discard,
    Envelope,
    FileInto,
    Keep,
    Message,
    Redirect,
    Reject,
    SieveCompileError,
    compile_cached,
    evaluate,
    parse_message,
)
from mda.sieve_config import sieve_environment, sieve_limits
from mda.store import (
    INBOX,
    InvalidInput,
    Mailbox,
    Session,
    Store,
    StoreError,
    User,
    UserNotFound,
    active_script,
    append_message,
    ensure_mailbox,
    find_user,
    get_mailbox,
    mailbox_names,
    normalize_address,
    normalize_mailbox_name,
    record_sieve_error,
    split_subaddress,
)
from mda.store.blobs import drop_blob_if_unreferenced, store_blob
from mda.store.messages import is_valid_flag

log = logging.getLogger("mda.delivery")

DEFAULT_SCRIPT_NAME = "default.sieve"
REDIRECT_UNAVAILABLE = "redirect is not available: no submission configured"


@dataclass(frozen=True, slots=True)
class _Problem:
    """A Sieve problem to record in the user's error log."""

    kind: str  # "compile", "runtime" or "warning"
    message: str


@dataclass(slots=True)
class _Target:
    """One mailbox to store a copy into.

    Attributes:
        flags: the copy's flags.
        create: create the mailbox if missing.
        message: the version editheader (RFC 5293) left for this action; None = as received.
    """

    flags: frozenset[str]
    create: bool
    message: Message | None = None


@dataclass(slots=True)
class _Plan:
    """What evaluation decided for one recipient, before anything is written."""

    user: User
    script_name: str | None
    targets: dict[str, _Target] = field(default_factory=dict)
    reject: Reject | None = None
    problems: list[_Problem] = field(default_factory=list)


class _MailboxHost:
    """The Sieve `Host`: answers `mailbox_exists` from the pre-fetched mailbox names."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def mailbox_exists(self, name: str) -> bool:
        """RFC 5490 §3.1: whether the user has mailbox `name` (INBOX in any case)."""
        try:
            return normalize_mailbox_name(name) in self.names
        except InvalidInput:
            return False


class _SharedBlob:
    """The transaction's message bytes, stored once on first use and shared by the copies."""

    def __init__(self, store: Store, data: bytes) -> None:
        self.store = store
        self.data = data
        self.id: int | None = None

    async def ensure(self) -> int:
        """Store the bytes (own short transaction) unless done already; return the blob id."""
        if self.id is None:
            async with self.store.transaction() as session:
                self.id = await store_blob(session, self.data)
        return self.id

    async def release_if_unused(self, queue_id: str) -> None:
        """Delete the blob if no copy refers to it (every recipient rejected or failed)."""
        if self.id is None:
            return
        try:
            async with self.store.transaction() as session:
                await drop_blob_if_unreferenced(session, self.id)
        except Exception:  # swept later by delete_orphan_blobs
            log.warning("%s: could not drop unused blob %d", queue_id, self.id, exc_info=True)


class Deliverer:
    """Delivers LMTP transactions into the store through each user's Sieve script.

    Args:
        store: the store.
        settings: hostname, recipient delimiter, quota reply mode, mailbox autocreate,
            global Sieve directory.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.limits = sieve_limits(settings)
        self._default_cache: tuple[int, str] | None = None

    # ------------------------------------------------------------------ RCPT

    async def check_recipient(self, address: str) -> Reply | None:
        """Decide a RCPT TO (RFC 2033 §4.1, RFC 5321 §4.1.1.3).

        Args:
            address: the recipient as given (may carry a subaddress).

        Returns:
            None to accept; otherwise the rejection: `550 5.1.1` for an unknown user or a
            malformed address, the over-quota reply for a user already at a limit,
            `451 4.3.0` when the store is unavailable.
        """
        try:
            async with self.store.read() as session:
                user = await self._resolve(session, address)
        except Exception as exc:
            reply, _ = reply_for(exc, address, quota_tempfail=self.settings.quota_full_tempfail)
            return reply
        if user is None:
            return replies.unknown_user(address)
        if user.quota_full:
            return replies.over_quota(address, tempfail=self.settings.quota_full_tempfail)
        return None

    async def _resolve(self, session: Session, address: str) -> User | None:
        """The user for a recipient: the exact address, else without its subaddress
        (RFC 5233 §4); None when neither exists or the address is malformed."""
        try:
            canonical = normalize_address(address)
        except InvalidInput:
            return None
        user = await find_user(session, canonical)
        if user is None:
            base, detail = split_subaddress(canonical, self.settings.recipient_delimiter)
            if detail is not None:
                user = await find_user(session, base)
        return user

    # ------------------------------------------------------------------ DATA

    async def deliver(self, transaction: Transaction) -> list[RecipientOutcome]:
        """Deliver a received message to each accepted recipient.

        Args:
            transaction: the LMTP transaction.

        Returns:
            Exactly one outcome per entry of `transaction.recipients`, in the same order.
            Never raises (except for cancellation).
        """
        started = time.monotonic()
        try:
            data = normalize_line_endings(transaction.data)
            message = parse_message(data)
        except Exception as exc:
            return [self._failed(transaction, rcpt, exc, started)
                    for rcpt in transaction.recipients]
        blob = _SharedBlob(self.store, data)
        outcomes = []
        try:
            for rcpt in transaction.recipients:
                outcomes.append(await self._deliver_one(transaction, rcpt, message, blob))
        finally:
            await asyncio.shield(blob.release_if_unused(transaction.queue_id))
        return outcomes

    def _failed(self, transaction: Transaction, rcpt: str, exc: Exception,
                started: float) -> RecipientOutcome:
        reply, result = reply_for(exc, rcpt, quota_tempfail=self.settings.quota_full_tempfail,
                                  queue_id=transaction.queue_id)
        return RecipientOutcome(rcpt, reply, result, (), _ms_since(started))

    async def _deliver_one(self, transaction: Transaction, rcpt: str, message: Message,
                           blob: _SharedBlob) -> RecipientOutcome:
        started = time.monotonic()
        try:
            plan = await self._plan(transaction, rcpt, message)
            if plan.reject is not None:
                await self._record_problems(plan, transaction.queue_id)
                return RecipientOutcome(rcpt, replies.sieve_reject(rcpt, plan.reject.reason),
                                        "rejected", (), _ms_since(started))
            if not plan.targets:
                await self._record_problems(plan, transaction.queue_id)
                return RecipientOutcome(rcpt, replies.delivered(rcpt, "Discarded"),
                                        "discarded", (), _ms_since(started))
            stored = await self._store(transaction, rcpt, plan, blob)
            return RecipientOutcome(rcpt, replies.delivered(rcpt), "stored", stored,
                                    _ms_since(started))
        except Exception as exc:
            return self._failed(transaction, rcpt, exc, started)

    # ------------------------------------------------------------------ evaluate

    async def _plan(self, transaction: Transaction, rcpt: str, message: Message) -> _Plan:
        """Resolve the user, load the script and mailbox names, and evaluate."""
        async with self.store.read() as session:
            user = await self._resolve(session, rcpt)
            if user is None:
                raise UserNotFound(f"no user for {rcpt}")
            script = await active_script(session, user.id)
            names = await mailbox_names(session, user.id)
        if script is not None:
            source, script_name = script.source, script.name
        else:
            source, script_name = self._default_script(), DEFAULT_SCRIPT_NAME
        plan = _Plan(user, script_name if source is not None else None)
        actions: tuple = (Keep(implicit=True),)
        if source is not None:
            actions = self._evaluate(plan, source, transaction, rcpt, message, names)
        self._collect(plan, actions, names)
        return plan

    def _evaluate(self, plan: _Plan, source: str, transaction: Transaction, rcpt: str,
                  message: Message, names: frozenset[str]) -> tuple:
        """Compile (cached) and run the script; errors become problems and implicit keep."""
        keep_only = (Keep(implicit=True),)
        try:
            program = compile_cached(source, limits=self.limits)
        except SieveCompileError as exc:
            plan.problems.append(_Problem(
                "compile", f"line {exc.line}, column {exc.column}: {exc.message}"))
            return keep_only
        environment = sieve_environment(
            self.settings, now=transaction.received_at, remote_host=transaction.helo,
            remote_ip=peer_address(transaction.peer), user_addresses=(plan.user.address,),
            script_name=plan.script_name or "")
        result = evaluate(program, message, Envelope(transaction.mail_from, rcpt),
                          environment, _MailboxHost(names), limits=self.limits)
        if result.errors:
            plan.problems.extend(_Problem("runtime", error) for error in result.errors)
            return keep_only
        if any(isinstance(action, Redirect) for action in result.actions):
            plan.problems.append(_Problem("runtime", REDIRECT_UNAVAILABLE))
            return keep_only
        return result.actions

    def _collect(self, plan: _Plan, actions: tuple, names: frozenset[str]) -> None:
        """Turn the action list into storage targets (mailbox → flags, create) or a reject."""
        for action in actions:
            if isinstance(action, Reject):
                plan.reject = action
            elif isinstance(action, Keep):
                self._target(plan, INBOX, action, create=False)
            elif isinstance(action, FileInto):
                create = action.create or self.settings.mailbox_autocreate
                self._target(plan, self._fileinto_mailbox(plan, action, names, create),
                             action, create=create)
            elif isinstance(action, Discard):
                continue
            else:  # vacation, notify: their sending arrives with outbound mail
                plan.problems.append(_Problem(
                    "warning", f"{type(action).__name__.lower()} is not available: "
                               "no submission configured; action ignored"))

    def _fileinto_mailbox(self, plan: _Plan, action: FileInto, names: frozenset[str],
                          create: bool) -> str:
        """The mailbox a fileinto stores into: its own when it exists or may be created,
        else INBOX (with a warning in the user's error log)."""
        try:
            name = normalize_mailbox_name(action.mailbox)
        except InvalidInput as exc:
            plan.problems.append(_Problem("warning", f"fileinto: {exc}; stored in INBOX"))
            return INBOX
        if name in names or create:
            return name
        plan.problems.append(_Problem(
            "warning", f"fileinto: mailbox {name!r} does not exist; stored in INBOX"))
        return INBOX

    @staticmethod
    def _target(plan: _Plan, mailbox: str, action: Keep | FileInto, *, create: bool) -> None:
        """Add a store target; a second one into the same mailbox merges into the first
        (one copy, flags combined, the later message version)."""
        valid = frozenset(flag for flag in action.flags if is_valid_flag(flag))
        if valid != action.flags:
            plan.problems.append(_Problem(
                "warning", f"invalid flags ignored: {sorted(action.flags - valid)!r}"))
        message = action.message  # None = as received (mda.sieve.actions, editheader)
        old = plan.targets.get(mailbox)
        if old is not None:
            valid, create = old.flags | valid, old.create or create
            message = message or old.message
        plan.targets[mailbox] = _Target(valid, create, message)

    def _default_script(self) -> str | None:
        """The global default script's source, or None when there is none (re-read when
        the file changes)."""
        path = Path(self.settings.sieve_scripts_dir) / DEFAULT_SCRIPT_NAME
        try:
            mtime = path.stat().st_mtime_ns
            if self._default_cache is None or self._default_cache[0] != mtime:
                self._default_cache = (mtime, path.read_bytes().decode("utf-8", "replace"))
        except FileNotFoundError:
            self._default_cache = None
            return None
        return self._default_cache[1]

    # ------------------------------------------------------------------ apply

    async def _store(self, transaction: Transaction, rcpt: str, plan: _Plan,
                     blob: _SharedBlob) -> tuple[str, ...]:
        """Store the copies in one transaction; returns the mailbox names stored into.

        Raises:
            QuotaExceeded, StoreUnavailable, StoreError: nothing was stored.
        """
        if any(target.message is None for target in plan.targets.values()):
            await blob.ensure()
        try:
            async with self.store.transaction() as session:
                # Edited versions (editheader) get their own blob, once per version.
                versions: dict[int, tuple[int, bytes]] = {}
                stored = []
                for name, target in plan.targets.items():
                    if target.message is None:
                        blob_id, data = blob.id, blob.data
                    else:
                        key = id(target.message)
                        if key not in versions:
                            edited = normalize_line_endings(target.message.raw)
                            versions[key] = (await store_blob(session, edited), edited)
                        blob_id, data = versions[key]
                    prefix = header_prefix(
                        mail_from=transaction.mail_from, recipient=rcpt,
                        helo=transaction.helo, peer=transaction.peer,
                        hostname=self.settings.hostname, queue_id=transaction.queue_id,
                        received_at=transaction.received_at,
                        add_empty_line=not has_header_section(data))
                    mailbox = await self._mailbox(session, plan.user.id, name, target.create)
                    copy = await append_message(
                        session, user_id=plan.user.id, mailbox=mailbox, blob_id=blob_id,
                        blob_size=len(data), header_prefix=prefix, flags=target.flags,
                        internal_date=transaction.received_at)
                    stored.append(copy.mailbox)
                await self._record(session, plan, transaction.queue_id)
        except StoreError:
            await self._record_problems(plan, transaction.queue_id)
            raise
        return tuple(stored)

    @staticmethod
    async def _mailbox(session: Session, user_id: int, name: str,
                       create: bool) -> Mailbox:
        if create or name == INBOX:
            return await ensure_mailbox(session, user_id, name)
        return await get_mailbox(session, user_id, name)

    async def _record(self, session: Session, plan: _Plan, queue_id: str) -> None:
        for problem in plan.problems:
            await record_sieve_error(session, plan.user.id, kind=problem.kind,
                                     message=problem.message, script_name=plan.script_name,
                                     queue_id=queue_id)

    async def _record_problems(self, plan: _Plan, queue_id: str) -> None:
        """Record the Sieve problems in their own transaction (when nothing is stored);
        a failure to record is logged, never turned into a failed delivery."""
        if not plan.problems:
            return
        try:
            async with self.store.transaction() as session:
                await self._record(session, plan, queue_id)
        except Exception:
            log.warning("%s: could not record Sieve errors for %s", queue_id,
                        plan.user.address, exc_info=True)


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
