"""Delivery: for each accepted recipient, run the Sieve scripts and apply the result.

Per LMTP transaction (`Deliverer.deliver`):
1. The message's line endings are normalised to CRLF and it is parsed once for Sieve (in a
   worker thread: a large message must not stall the event loop). A message that already
   has CRLF line endings is not copied by either step (`parse_received`), and its bytes are
   stored in chunks (`mda.store.blobs`), so a delivery holds the message about once beside
   the LMTP layer's copy.
2. For each recipient, in RCPT order and isolated from the others:
   a. resolve the user (domain case-insensitive; `user+detail@dom` → `user@dom`);
   b. read the active script and the user's mailboxes with their special-use attributes,
      in one short read;
   c. evaluate in a worker thread (`mda.sieve`, never on the event loop): the global
      `before.d/*.sieve`, the user's active script (or the global `default.sieve`), then
      `after.d/*.sieve`, with Pigeonhole's multiscript rules
      (`mda.sieve.multiscript.evaluate_sequence`). A user script that does not compile is
      skipped and recorded; a run-time error keeps implicitly and is recorded; so does a
      redirect, vacation or notify when no submission is configured. The engine's
      questions are answered by `DeliveryHost` (includes, duplicate records, special-use);
   d. build the messages to send (`mda.delivery.outbound`: redirect, notify, vacation),
      leaving out those already sent within their period, and connect to the MTA;
   e. apply the actions in ONE write transaction: message rows with this recipient's
      header prefix (each copy as editheader left it), flags, UIDs, quota (conditional
      UPDATE), then the submissions, then the duplicate-tracking records (RFC 7352),
      redirect and vacation records and the error log. A redirect or notification the
      MTA does not take for now rolls it all back (451 4.3.0, the reason logged and
      recorded); one it refuses for good (5xx) is a run-time error that restores the
      implicit keep; a failed vacation reply is only logged. All submissions of the
      transaction share `MDA_SUBMISSION_BUDGET`. `mda.delivery.outbound` explains it all;
   f. the reply is 250 only after that transaction committed (RFC 2033 §4.2).

Time. The recipients of a transaction share `MDA_DELIVERY_BUDGET` seconds, counted from
the end of DATA (`deliver`): waits for the database (a lock held elsewhere, a full pool)
add up recipient after recipient, and replies that come after the MTA's own timeout
(Postfix `lmtp_data_done_timeout`) make it send the whole transaction again, a second copy
for every recipient already stored. When the budget runs out, the recipient being
delivered is cancelled unless it is committing: its transaction rolls back and it gets
`451 4.3.0`; a commit in flight is waited for instead and answered by its result, so a
reply never contradicts the database. Every later recipient gets `451 4.3.0` at once.

The default mailbox (keep, the implicit keep) is INBOX; with `MDA_SAVE_TO_DETAIL_MAILBOX`
a recipient `user+detail@dom` makes it mailbox `detail` when that exists or
`MDA_MAILBOX_AUTOCREATE` allows creating it, else INBOX (Dovecot's
lmtp_save_to_detail_mailbox with lda_mailbox_autocreate). Delivered-To keeps the address
as given.
3. The message bytes are stored once as a shared blob, in their own short transaction,
   the first time a recipient needs them; a blob no recipient kept is deleted at the end.

A result that both stores (an earlier script's keep) and rejects (a later script) is
stored and answered 250; the reject is recorded as ignored (docs/sieve-deviations.md).

`deliver` never raises: every recipient gets exactly one outcome (`mda.delivery.errors`
maps failures to replies).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mda import metrics, replies
from mda.config import Settings
from mda.delivery.errors import DeliveryBudgetSpent, reply_for
from mda.delivery.headers import (
    has_header_section,
    header_prefix,
    normalize_line_endings,
    peer_address,
)
from mda.delivery.host import DeliveryHost
from mda.delivery.outbound import (
    OutboundSession,
    Pending,
    make_submitter,
    outbound_kinds,
    outbound_unavailable,
    plan_outbound,
    redirect_expiry,
)
from mda.delivery.scripts import DEFAULT_SCRIPT, GlobalScripts
from mda.delivery.transaction import RecipientOutcome, Transaction
from mda.outbound import SubmissionConnection, SubmissionError
from mda.replies import Reply
from mda.sieve import (
    Action,
    DuplicateMark,
    Envelope,
    FileInto,
    Keep,
    Message,
    Notify,
    Program,
    Redirect,
    Reject,
    Result,
    SieveCompileError,
    Vacation,
    compile_cached,
    evaluate,
    parse_message,
)
from mda.sieve.core import REDIRECTED_FROM
from mda.sieve.multiscript import evaluate_sequence
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
    claim_duplicate,
    duplicate_seen,
    ensure_mailbox,
    find_user,
    get_mailbox,
    mailbox_special_uses,
    normalize_address,
    normalize_mailbox_name,
    normalize_special_use,
    record_duplicates,
    record_sieve_error,
    split_subaddress,
)
from mda.store.blobs import drop_blob_if_unreferenced, store_blob
from mda.store.messages import is_valid_flag
from mda.store.users import lock_user
from mda.store.vacation import (
    claim_vacation_reply,
    record_vacation_reply,
    vacation_replied,
)

log = logging.getLogger("mda.delivery")

DEFAULT_SCRIPT_NAME = DEFAULT_SCRIPT
REDIRECT_UNAVAILABLE = outbound_unavailable(["redirect"])
REJECT_AFTER_KEEP = ("reject ignored: an earlier script already kept the message, so it was "
                     "stored and accepted (250)")
_KEEP_ONLY: tuple[Action, ...] = (Keep(implicit=True),)
UNWIND_GRACE = 1.0  # seconds a recipient cancelled by the budget gets to roll back


class _CommitGuard:
    """Tells the budget whether a recipient's task is committing a write transaction: a
    commit in flight is never cancelled (its outcome would be unknown), it is waited for."""

    def __init__(self) -> None:
        self.committing = False
        self._over = asyncio.Event()

    def begin(self) -> None:
        self.committing = True
        self._over.clear()

    def end(self) -> None:
        self.committing = False
        self._over.set()

    async def wait_commit(self, task: asyncio.Future) -> None:
        """Return when the commit in flight ended or `task` finished."""
        over = asyncio.ensure_future(self._over.wait())
        try:
            await asyncio.wait({task, over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            over.cancel()


_GUARD: ContextVar[_CommitGuard | None] = ContextVar("mda_delivery_commit", default=None)


@asynccontextmanager
async def _write(store: Store) -> AsyncIterator[Session]:
    """`store.transaction()`, with its commit marked for the recipient's `_CommitGuard`."""
    guard = _GUARD.get()
    try:
        async with store.transaction() as session:
            yield session
            if guard is not None:
                guard.begin()  # nothing awaits between here and the COMMIT
    finally:
        if guard is not None:
            guard.end()


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
        special_use: the attribute a mailbox created for this copy gets (RFC 8579 §4).
    """

    flags: frozenset[str]
    create: bool
    message: Message | None = None
    special_use: str | None = None


@dataclass(slots=True)
class _Plan:
    """What evaluation decided for one recipient, before anything is written."""

    user: User
    script_name: str | None  # for the error log: the active script, default.sieve or None
    targets: dict[str, _Target] = field(default_factory=dict)
    reject: Reject | None = None
    problems: list[_Problem] = field(default_factory=list)
    duplicates: tuple[DuplicateMark, ...] = ()
    outbound_actions: tuple[Action, ...] = ()  # redirect/vacation/notify, in result order
    pending: list[Pending] = field(default_factory=list)
    sent: list[Pending] = field(default_factory=list)  # taken by the MTA
    default_mailbox: str = INBOX
    default_create: bool = False  # create default_mailbox if missing (detail mailbox)
    restore_keep: bool = False  # a submission was refused for good: keep (RFC 5228 §2.10.6)


@dataclass(frozen=True, slots=True)
class _Facts:
    """What one short read found out about the recipient before evaluation."""

    user: User
    script_name: str | None  # the active script's name, None when the user has none
    source: str | None
    special_uses: dict[str, str | None]
    detail: str | None = None  # the subaddress of the recipient (RFC 5233), if any


class _SharedBlob:
    """The transaction's message bytes, stored once on first use and shared by the copies."""

    def __init__(self, store: Store, data: bytes) -> None:
        self.store = store
        self.data = data
        self.id: int | None = None

    async def ensure(self) -> int:
        """Store the bytes (own short transaction) unless done already; return the blob id.

        The id is kept only once that transaction has committed: an id from a commit that
        failed names no blob, and SQLite gives it to the next blob stored (another
        transaction's message).
        """
        if self.id is None:
            async with _write(self.store) as session:
                blob_id = await store_blob(session, self.data)
            self.id = blob_id
        return self.id

    async def ensure_in(self, session: Session) -> bool:
        """Store the bytes in the caller's transaction unless stored already; True when
        stored now (the caller calls `forget` if that transaction rolls back)."""
        if self.id is not None:
            return False
        self.id = await store_blob(session, self.data)
        return True

    def forget(self) -> None:
        """The transaction `ensure_in` stored the bytes in rolled back."""
        self.id = None

    async def release_if_unused(self, queue_id: str) -> None:
        """Delete the blob if no copy refers to it (every recipient rejected or failed)."""
        if self.id is None:
            return
        try:
            async with _write(self.store) as session:
                await drop_blob_if_unreferenced(session, self.id)
        except Exception:  # swept later by delete_orphan_blobs
            log.warning("%s: could not drop unused blob %d", queue_id, self.id, exc_info=True)


def parse_received(data: bytes) -> Message:
    """Parse a received message for Sieve without copying its body: `parse_message`,
    which parses the header section only and refers to the body and its MIME parts by
    offsets into `data` (an editheader version joins its new header with a view of it).

    Args:
        data: the message, CRLF line endings (`normalize_line_endings`).

    Returns:
        The `Message`; its `raw` is `data` itself.
    """
    return parse_message(data)


def _prepare(data: bytes) -> tuple[bytes, Message]:
    """Normalise line endings and parse for Sieve (run in a worker thread). Data already
    CRLF-clean is neither copied nor its body duplicated: the result shares `data`."""
    normalized = normalize_line_endings(data)
    return normalized, parse_received(normalized)


class Deliverer:
    """Delivers LMTP transactions into the store through the Sieve scripts.

    Args:
        store: the store.
        settings: hostname, recipient delimiter, quota reply mode, mailbox autocreate,
            detail mailbox, global Sieve directory, Sieve limits and run settings
            (`mda.sieve_config`), submission URL and redirect settings.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.limits = sieve_limits(settings)
        self.scripts = GlobalScripts(settings.sieve_scripts_dir, self.limits)
        self.submitter = make_submitter(settings)
        self._unwinding: set[asyncio.Future] = set()  # cancelled recipients still rolling back

    # ------------------------------------------------------------------ RCPT

    async def check_recipient(self, address: str, queue_id: str = "") -> Reply | None:
        """Decide a RCPT TO (RFC 2033 §4.1, RFC 5321 §4.1.1.3).

        Args:
            address: the recipient as given (may carry a subaddress).
            queue_id: the LMTP transaction's id, for the log line of a failure.

        Returns:
            None to accept; otherwise the rejection: `550 5.1.1` for an unknown user or a
            malformed address, the over-quota reply for a user already at a limit,
            `451 4.3.0` when the store is unavailable.
        """
        try:
            async with self.store.read() as session:
                user, _ = await self._resolve(session, address)
        except Exception as exc:
            reply, _ = reply_for(exc, address, quota_tempfail=self.settings.quota_full_tempfail,
                                 queue_id=queue_id)
            return reply
        if user is None:
            return replies.unknown_user(address)
        if user.quota_full:
            return replies.over_quota(address, tempfail=self.settings.quota_full_tempfail)
        return None

    async def _resolve(self, session: Session, address: str) -> tuple[User | None, str | None]:
        """The user for a recipient: the exact address, else without its subaddress
        (RFC 5233 §4); None when neither exists or the address is malformed. Second: the
        subaddress (detail) when the user was found without it, else None."""
        try:
            canonical = normalize_address(address)
        except InvalidInput:
            return None, None
        user = await find_user(session, canonical)
        if user is not None:
            return user, None
        base, detail = split_subaddress(canonical, self.settings.recipient_delimiter)
        if detail is None:
            return None, None
        user = await find_user(session, base)
        return user, detail if user is not None else None

    # ------------------------------------------------------------------ DATA

    async def deliver(self, transaction: Transaction) -> list[RecipientOutcome]:
        """Deliver a received message to each accepted recipient.

        Args:
            transaction: the LMTP transaction.

        Returns:
            Exactly one outcome per entry of `transaction.recipients`, in the same order,
            all within `MDA_DELIVERY_BUDGET` seconds (plus a commit in flight when it ran
            out, and `UNWIND_GRACE`). Never raises (except for cancellation).
        """
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self.settings.delivery_budget
        try:
            data, message = await asyncio.to_thread(_prepare, transaction.data)
        except Exception as exc:
            return [self._failed(transaction, rcpt, exc, started)
                    for rcpt in transaction.recipients]
        blob = _SharedBlob(self.store, data)
        outbound = OutboundSession(self.submitter, self.settings.submission_budget) \
            if self.submitter is not None else None
        outcomes = []
        try:
            for rcpt in transaction.recipients:
                outcomes.append(await self._deliver_within(deadline, transaction, rcpt,
                                                           message, blob, outbound))
        finally:
            if outbound is not None:
                await asyncio.shield(outbound.close())
            # Dropping an unused blob may wait for the database too: not past the budget
            # (one left behind is swept by delete_orphan_blobs).
            await self._finish_by(deadline, blob.release_if_unused(transaction.queue_id))
        return outcomes

    async def _deliver_within(self, deadline: float, transaction: Transaction, rcpt: str,
                              message: Message, blob: _SharedBlob,
                              outbound: OutboundSession | None) -> RecipientOutcome:
        """`_deliver_one`, cancelled when the loop's clock reaches `deadline` unless it is
        committing (then its commit is waited for); a recipient not started by then, or
        cancelled, gets `DeliveryBudgetSpent` (451 4.3.0), its transaction rolled back."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        budget = self.settings.delivery_budget
        if loop.time() >= deadline:
            return self._failed(transaction, rcpt, DeliveryBudgetSpent(budget, tried=False),
                                started)
        guard = _CommitGuard()

        async def guarded() -> RecipientOutcome:
            _GUARD.set(guard)  # this task's context only
            return await self._deliver_one(transaction, rcpt, message, blob, outbound)

        task = asyncio.ensure_future(guarded())
        try:
            await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
            while not task.done() and guard.committing:
                await guard.wait_commit(task)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()  # at an await that is not a COMMIT: the transaction rolls back
            await asyncio.wait({task}, timeout=UNWIND_GRACE)
            if not task.done():  # e.g. SQLite busy-waiting in a thread: let it finish
                self._unwinding.add(task)
                task.add_done_callback(self._unwound)
        if task.done() and not task.cancelled():
            return task.result()  # finished (or committed) after all: the true outcome
        return self._failed(transaction, rcpt, DeliveryBudgetSpent(budget, tried=True),
                            started)

    def _unwound(self, task: asyncio.Future) -> None:
        self._unwinding.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("a recipient cancelled by the delivery budget failed while rolling "
                        "back", exc_info=task.exception())

    async def _finish_by(self, deadline: float, work: Awaitable[None]) -> None:
        """Await `work` until `deadline` at the latest; past it, leave it running (never
        cancelled)."""
        task = asyncio.ensure_future(work)
        remaining = deadline - asyncio.get_running_loop().time()
        await asyncio.wait({task}, timeout=max(0.0, remaining))
        if not task.done():
            self._unwinding.add(task)
            task.add_done_callback(self._unwound)

    def _failed(self, transaction: Transaction, rcpt: str, exc: Exception,
                started: float) -> RecipientOutcome:
        reply, result = reply_for(exc, rcpt, quota_tempfail=self.settings.quota_full_tempfail,
                                  queue_id=transaction.queue_id)
        return RecipientOutcome(rcpt, reply, result, (), _ms_since(started))

    async def _deliver_one(self, transaction: Transaction, rcpt: str, message: Message,
                           blob: _SharedBlob, outbound: OutboundSession | None
                           ) -> RecipientOutcome:
        started = time.monotonic()
        try:
            plan = await self._plan(transaction, rcpt, message)
            if plan.reject is not None:
                await self._commit_without_copies(plan, transaction)
                return RecipientOutcome(rcpt, replies.sieve_reject(rcpt, plan.reject.reason),
                                        "rejected", (), _ms_since(started))
            await self._drop_already_sent(plan, transaction, rcpt)
            if plan.targets or plan.pending:
                stored = await self._store(transaction, rcpt, plan, blob, outbound)
            else:
                stored = ()
                await self._commit_without_copies(plan, transaction)
            if stored:
                return RecipientOutcome(rcpt, replies.delivered(rcpt), "stored", stored,
                                        _ms_since(started))
            detail, result = (("Redirected", "redirected")
                              if any(isinstance(a, Redirect) for a in plan.outbound_actions)
                              else ("Discarded", "discarded"))
            return RecipientOutcome(rcpt, replies.delivered(rcpt, detail), result, (),
                                    _ms_since(started))
        except Exception as exc:
            return self._failed(transaction, rcpt, exc, started)

    # ------------------------------------------------------------------ evaluate

    async def _plan(self, transaction: Transaction, rcpt: str, message: Message) -> _Plan:
        """Read what the scripts need, evaluate them in a worker thread, and plan the stores."""
        facts = await self._facts(rcpt)
        host = DeliveryHost(self.store, asyncio.get_running_loop(), facts.user.id,
                            facts.special_uses, self.scripts, transaction.received_at)
        plan = _Plan(facts.user, facts.script_name)
        self._default_mailbox(plan, facts, host)
        actions = await asyncio.to_thread(self._evaluate, plan, facts, transaction, rcpt,
                                          message, host)
        self._collect(plan, actions, host)
        if plan.reject is None and plan.outbound_actions:  # hashing and copying: a worker
            plan.pending = await asyncio.to_thread(
                plan_outbound, plan.outbound_actions, original=message,
                user_address=facts.user.address, rcpt=rcpt, mail_from=transaction.mail_from,
                settings=self.settings, now=transaction.received_at,
                queue_id=transaction.queue_id)
        for problem in plan.problems:  # each evaluation's problems once, recorded or not
            metrics.sieve_problem(problem.kind)
        return plan

    def _default_mailbox(self, plan: _Plan, facts: _Facts, host: DeliveryHost) -> None:
        """With `save_to_detail_mailbox`, make the recipient's detail the mailbox keep and
        the implicit keep store into, when it exists or may be created; else INBOX."""
        if not self.settings.save_to_detail_mailbox or not facts.detail:
            return
        try:
            name = normalize_mailbox_name(facts.detail)
        except InvalidInput:
            return
        if host.mailbox_exists(name):
            plan.default_mailbox = name
        elif self.settings.mailbox_autocreate:
            plan.default_mailbox, plan.default_create = name, True

    async def _facts(self, rcpt: str) -> _Facts:
        """The user, the active script and the mailboxes, in one short read.

        Raises:
            UserNotFound: the user went away since RCPT.
        """
        async with self.store.read() as session:
            user, detail = await self._resolve(session, rcpt)
            if user is None:
                raise UserNotFound(f"no user for {rcpt}")
            script = await active_script(session, user.id)
            special_uses = await mailbox_special_uses(session, user.id)
        if script is None:
            return _Facts(user, None, None, special_uses, detail)
        return _Facts(user, script.name, script.source, special_uses, detail)

    def _evaluate(self, plan: _Plan, facts: _Facts, transaction: Transaction, rcpt: str,
                  message: Message, host: DeliveryHost) -> tuple[Action, ...]:
        """Compile (cached) and run the scripts; runs in a worker thread.

        Problems (a user script that does not compile, a run-time error, a redirect,
        vacation or notify when no submission is configured) are added to the plan and give
        the implicit keep. The result's duplicate records are kept in the plan unless there
        was an error.
        """
        programs = self._programs(plan, facts)
        if not programs:
            return _KEEP_ONLY
        environment = sieve_environment(
            self.settings, now=transaction.received_at, remote_host=transaction.helo,
            remote_ip=peer_address(transaction.peer), user_addresses=(facts.user.address,),
            script_name=facts.script_name or "")
        envelope = Envelope(transaction.mail_from, rcpt)
        result: Result
        if len(programs) == 1:
            result = evaluate(programs[0], message, envelope, environment, host,
                              limits=self.limits)
        else:
            result = evaluate_sequence(programs, message, envelope, environment, host,
                                       limits=self.limits)
        plan.problems.extend(_Problem("warning", warning) for warning in result.warnings
                             if REDIRECTED_FROM in warning)  # a redirect loop prevented
        if result.errors:
            plan.problems.extend(_Problem("runtime", error) for error in result.errors)
            return result.actions
        kinds = outbound_kinds(result.actions)
        if kinds and self.submitter is None:
            plan.problems.append(_Problem("runtime", outbound_unavailable(kinds)))
            return _KEEP_ONLY
        plan.duplicates = result.duplicate_ids
        return result.actions

    def _programs(self, plan: _Plan, facts: _Facts) -> list[Program]:
        """before.d, the user's script (or default.sieve), after.d: compiled, in order."""
        main: Program | None = None
        if facts.source is not None:
            try:
                main = compile_cached(facts.source, limits=self.limits)
            except SieveCompileError as exc:
                plan.problems.append(_Problem("compile", str(exc)))
        else:
            main = self.scripts.default()
            if main is not None:
                plan.script_name = DEFAULT_SCRIPT_NAME
        middle = [main] if main is not None else []
        return [*self.scripts.before(), *middle, *self.scripts.after()]

    def _collect(self, plan: _Plan, actions: tuple[Action, ...], host: DeliveryHost) -> None:
        """Turn the action list into storage targets (mailbox → flags, create), a reject,
        and the outbound actions (redirect, vacation, notify)."""
        outbound = []
        for action in actions:
            if isinstance(action, Reject):
                plan.reject = action
            elif isinstance(action, Keep):
                self._target(plan, plan.default_mailbox, action, create=plan.default_create)
            elif isinstance(action, FileInto):
                create = action.create or self.settings.mailbox_autocreate
                name, special_use = self._fileinto_mailbox(plan, action, host, create)
                self._target(plan, name, action, create=create, special_use=special_use)
            elif isinstance(action, (Redirect, Vacation, Notify)):
                outbound.append(action)
        plan.outbound_actions = tuple(outbound)
        if plan.reject is not None and plan.targets:
            # Only a sequence of scripts gets here (within one script reject conflicts with
            # keep and fileinto): a 550 after storing would say the mail was not delivered.
            plan.problems.append(_Problem("runtime", REJECT_AFTER_KEEP))
            plan.reject = None

    def _fileinto_mailbox(self, plan: _Plan, action: FileInto, host: DeliveryHost,
                          create: bool) -> tuple[str, str | None]:
        """The mailbox a fileinto stores into, and the special-use attribute to give it if
        it is created: the user's mailbox with `:specialuse` when there is one (RFC 8579
        §4), else the named one when it exists or may be created, else INBOX (with a
        warning in the user's error log)."""
        special_use = None
        if action.special_use is not None:
            found = host.special_use_mailbox(action.special_use)
            if found is not None:
                return found, None
            try:
                special_use = normalize_special_use(action.special_use)
            except InvalidInput as exc:
                plan.problems.append(_Problem("warning", f"fileinto :specialuse: {exc}"))
        try:
            name = normalize_mailbox_name(action.mailbox)
        except InvalidInput as exc:
            plan.problems.append(_Problem("warning", f"fileinto: {exc}; stored in INBOX"))
            return INBOX, None
        if host.mailbox_exists(name) or create:
            return name, special_use
        plan.problems.append(_Problem(
            "warning", f"fileinto: mailbox {name!r} does not exist; stored in INBOX"))
        return INBOX, None

    @staticmethod
    def _target(plan: _Plan, mailbox: str, action: Keep | FileInto, *, create: bool,
                special_use: str | None = None) -> None:
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
            special_use = old.special_use or special_use
        plan.targets[mailbox] = _Target(valid, create, message, special_use)

    # ------------------------------------------------------------------ apply

    async def _drop_already_sent(self, plan: _Plan, transaction: Transaction,
                                 rcpt: str) -> None:
        """Leave out of `plan.pending` what was sent within its period: a redirect of this
        message to the same address, a vacation reply to this sender for this handle
        (RFC 5230 §4.2). One short read; nothing to do when nothing is pending."""
        if not plan.pending:
            return
        now = transaction.received_at
        kept = []
        async with self.store.read() as session:
            for pending in plan.pending:
                if pending.redirect_key is not None and await duplicate_seen(
                        session, plan.user.id, pending.redirect_key, now):
                    done = True
                elif pending.vacation is not None:
                    done = await vacation_replied(session, plan.user.id,
                                                  pending.vacation.handle,
                                                  pending.vacation.sender, now)
                else:
                    done = False
                if done:
                    log.info("%s: <%s>: %s not sent: already sent within its period",
                             transaction.queue_id, rcpt, pending.describe())
                else:
                    kept.append(pending)
        plan.pending = kept

    @staticmethod
    async def _connect(plan: _Plan, outbound: OutboundSession | None,
                       transaction: Transaction, rcpt: str) -> SubmissionConnection | None:
        """The transaction's SMTP session for `plan.pending`, opened (if need be) before
        the write transaction starts.

        Raises:
            SubmissionError: the MTA cannot be reached or the submission budget is spent,
                and a redirect or notification is pending (its message names them; a
                pending vacation reply alone is logged and dropped instead).
        """
        if not plan.pending or outbound is None:
            return None
        try:
            return await outbound.connection()
        except SubmissionError as exc:
            needed = [p for p in plan.pending if p.vacation is None]
            if needed:
                raise SubmissionError(f"{'; '.join(p.describe() for p in needed)} not sent: "
                                      f"{exc}") from None
            for pending in plan.pending:
                log.warning("%s: <%s>: %s dropped: %s", transaction.queue_id, rcpt,
                            pending.describe(), exc)
            plan.pending = []
            return None

    async def _store(self, transaction: Transaction, rcpt: str, plan: _Plan,
                     blob: _SharedBlob, outbound: OutboundSession | None
                     ) -> tuple[str, ...]:
        """Store the copies, send the pending messages, and write the duplicate, redirect
        and vacation records and the problems, in one transaction (see
        `mda.delivery.outbound` for the order); returns the mailbox names stored into.

        Raises:
            QuotaExceeded, StoreUnavailable, StoreError: nothing was stored or recorded;
                nothing was sent either, unless the failure came after the submissions
                (the commit itself: the duplicate-on-retry window of `mda.delivery.outbound`).
            SubmissionError: a redirect or notification was not taken by the MTA for now
                (temporary); nothing was stored, the reason is recorded in the user's error
                log (messages sent before it in this call were sent, and their redirect
                records are written).
        """
        if any(target.message is None for target in plan.targets.values()):
            await blob.ensure()
        blob_stored_here = False
        try:
            connection = await self._connect(plan, outbound, transaction, rcpt)
            async with _write(self.store) as session:
                await lock_user(session, plan.user.id)  # first: no deadlock on PostgreSQL
                stored = await self._copies(session, transaction, rcpt, plan, blob,
                                            plan.targets)
                await self._send(session, connection, plan, transaction, rcpt)
                if plan.restore_keep and plan.default_mailbox not in plan.targets:
                    blob_stored_here = await blob.ensure_in(session)
                    keep = {plan.default_mailbox: _Target(frozenset(), plan.default_create)}
                    plan.targets.update(keep)
                    stored += await self._copies(session, transaction, rcpt, plan, blob, keep)
                await self._record(session, plan, transaction, plan.sent)
        except Exception as exc:
            if blob_stored_here:
                blob.forget()
            await self._after_failure(plan, transaction, rcpt, exc)
            raise
        return stored

    async def _after_failure(self, plan: _Plan, transaction: Transaction, rcpt: str,
                             exc: Exception) -> None:
        """After the recipient's transaction rolled back, in one small transaction of its
        own: the records of the redirects sent before the failure (so the MTA's retry does
        not send them again), and the Sieve problems, with a failed submission's reason
        added (so `mda sieve errors` explains the 451). Best effort: a failure here is
        logged (the retry then sends those redirects twice)."""
        done = [p for p in plan.sent if p.redirect_key is not None]
        problems = list(plan.problems) if isinstance(exc, StoreError) else []
        if isinstance(exc, SubmissionError):
            problems.append(_Problem("runtime", f"{exc}; the message was not delivered "
                                     "yet (451 4.3.0), the MTA will retry"))
        if not done and not problems:
            return
        now = transaction.received_at
        try:
            async with _write(self.store) as session:
                if done:
                    await record_duplicates(
                        session, plan.user.id,
                        [(p.redirect_key, redirect_expiry(self.settings, now)) for p in done],
                        now)
                for problem in problems:
                    await record_sieve_error(session, plan.user.id, kind=problem.kind,
                                             message=problem.message,
                                             script_name=plan.script_name,
                                             queue_id=transaction.queue_id)
        except Exception:
            log.warning("%s: <%s>: could not record the redirects already sent or the Sieve "
                        "errors", transaction.queue_id, rcpt, exc_info=True)

    async def _copies(self, session: Session, transaction: Transaction, rcpt: str,
                      plan: _Plan, blob: _SharedBlob, targets: dict[str, _Target]
                      ) -> tuple[str, ...]:
        """Write the copies of `targets` (quota charged); returns the mailbox names."""
        # Edited versions (editheader) get their own blob, once per version.
        versions: dict[int, tuple[int, bytes]] = {}
        stored = []
        for name, target in targets.items():
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
                add_empty_line=not has_header_section(data), protocol=transaction.protocol)
            mailbox = await self._mailbox(session, plan.user.id, name, target)
            copy = await append_message(
                session, user_id=plan.user.id, mailbox=mailbox, blob_id=blob_id,
                blob_size=len(data), header_prefix=prefix, flags=target.flags,
                internal_date=transaction.received_at)
            stored.append(copy.mailbox)
        return tuple(stored)

    async def _send(self, session: Session, connection: SubmissionConnection | None,
                    plan: _Plan, transaction: Transaction, rcpt: str) -> None:
        """Submit the pending messages once the copies are written; those sent are added
        to `plan.sent`. A redirect or notification refused for good (5xx) is a run-time
        error: recorded in `plan.problems`, its claimed record released, and
        `plan.restore_keep` set; a refused vacation reply is logged and dropped.

        Raises:
            SubmissionError: a redirect or notification failed for now (temporary; the
                caller rolls back); its message names the message and the reason.
        """
        if connection is None or not plan.pending:
            return
        await session.flush()  # the copies and quota are written before anything leaves
        for pending in plan.pending:
            async with session.begin_nested() as savepoint:  # the claim, released on refusal
                if not await self._claim(session, plan, pending, transaction.received_at):
                    log.info("%s: <%s>: %s not sent: already sent within its period",
                             transaction.queue_id, rcpt, pending.describe())
                    continue
                try:
                    await connection.send(pending.message)
                except SubmissionError as exc:
                    if pending.vacation is None and not exc.permanent:
                        raise SubmissionError(f"{pending.describe()} not sent: {exc}") from None
                    if not exc.accepted:
                        await savepoint.rollback()
                    self._refused(plan, pending, exc, transaction.queue_id, rcpt)
                    if not exc.accepted:
                        continue
            log.info("%s: <%s>: %s sent", transaction.queue_id, rcpt, pending.describe())
            plan.sent.append(pending)

    @staticmethod
    def _refused(plan: _Plan, pending: Pending, exc: SubmissionError, queue_id: str,
                 rcpt: str) -> None:
        """A vacation reply that failed (dropped), or a redirect or notification the MTA
        refused for good: a run-time error that keeps the message (RFC 5228 §2.10.6)."""
        if pending.vacation is not None:
            log.warning("%s: <%s>: %s dropped: %s", queue_id, rcpt, pending.describe(), exc)
            return
        text = f"{pending.describe()} refused for good: {exc}; the message was kept instead"
        log.warning("%s: <%s>: %s", queue_id, rcpt, text)
        plan.problems.append(_Problem("runtime", text))
        plan.restore_keep = True

    async def _claim(self, session: Session, plan: _Plan, pending: Pending,
                     now: datetime) -> bool:
        """Claim the record of a redirect or vacation reply in the recipient's transaction
        just before sending it; False when a concurrent delivery (another LMTP connection
        with a message from the same sender, or the same message) claimed it first. The
        early read in `_drop_already_sent` cannot see those: they were not committed yet."""
        if pending.redirect_key is not None:
            return await claim_duplicate(session, plan.user.id, pending.redirect_key,
                                         redirect_expiry(self.settings, now), now)
        if pending.vacation is not None:
            return await claim_vacation_reply(
                session, plan.user.id, pending.vacation.handle, pending.vacation.sender,
                now + timedelta(seconds=pending.vacation.seconds), now)
        return True

    @staticmethod
    async def _mailbox(session: Session, user_id: int, name: str, target: _Target) -> Mailbox:
        if target.create or name == INBOX:
            return await ensure_mailbox(session, user_id, name, special_use=target.special_use)
        return await get_mailbox(session, user_id, name)

    async def _record(self, session: Session, plan: _Plan, transaction: Transaction,
                      sent: list[Pending] = ()) -> None:
        """Write the duplicate-tracking records (RFC 7352 §3, expiring `seconds` after the
        delivery), the records of the redirects and vacation replies `sent`, and the Sieve
        problems, in the recipient's transaction."""
        now = transaction.received_at
        records = [(mark.id_hash, now + timedelta(seconds=mark.seconds))
                   for mark in plan.duplicates]
        records += [(p.redirect_key, redirect_expiry(self.settings, now))
                    for p in sent if p.redirect_key is not None]
        if records:
            await record_duplicates(session, plan.user.id, records, now)
        for pending in sent:
            if pending.vacation is not None:
                await record_vacation_reply(
                    session, plan.user.id, pending.vacation.handle, pending.vacation.sender,
                    now + timedelta(seconds=pending.vacation.seconds), now)
        await self._record_errors(session, plan, transaction.queue_id)

    async def _record_errors(self, session: Session, plan: _Plan, queue_id: str) -> None:
        for problem in plan.problems:
            await record_sieve_error(session, plan.user.id, kind=problem.kind,
                                     message=problem.message, script_name=plan.script_name,
                                     queue_id=queue_id)

    async def _commit_without_copies(self, plan: _Plan, transaction: Transaction) -> None:
        """Finish a rejected or discarded delivery: record its duplicate records and
        problems in one transaction. Without duplicate records a failure to record is
        only logged; with them it raises (the recipient gets 451 and the retry is not
        taken for a duplicate).

        Raises:
            StoreError: the duplicate records could not be written.
        """
        if not plan.duplicates:
            await self._record_problems(plan, transaction.queue_id)
            return
        async with _write(self.store) as session:
            await self._record(session, plan, transaction)

    async def _record_problems(self, plan: _Plan, queue_id: str) -> None:
        """Record the Sieve problems in their own transaction (when nothing is stored);
        a failure to record is logged, never turned into a failed delivery."""
        if not plan.problems:
            return
        try:
            async with _write(self.store) as session:
                await self._record_errors(session, plan, queue_id)
        except Exception:
            log.warning("%s: could not record Sieve errors for %s", queue_id,
                        plan.user.address, exc_info=True)


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000.0
