"""What a recipient's Sieve result sends (redirect, vacation reply, notification), and when.

Order and atomicity. For one recipient, delivery:

1. evaluates; without `MDA_SUBMISSION_URL` a result holding redirect, vacation or notify is a
   run-time error (the implicit keep, and the error in `mda sieve errors`), never a silent
   drop (`outbound_unavailable`);
2. builds the messages (`plan_outbound`) and drops those already sent within their period
   (a redirect of the same message to the same address, a vacation reply to the same
   sender for the same handle): one short read;
3. connects to the MTA, *before* taking the database write lock: one SMTP session per LMTP
   transaction (`OutboundSession`), opened for the first recipient that sends something
   and reused by the next ones while it stays usable;
4. in the recipient's write transaction: stores the copies and charges quota (an
   over-quota recipient therefore never sends anything), then submits every message,
   redirects and notifications first and the vacation reply last, then stores the keep a
   permanent refusal restored (below), then writes the duplicate, redirect and vacation
   records of what was sent and the Sieve errors, then commits;
5. answers 250 only after that commit.

Failures. A redirect or notification the MTA does not take *for now* (unreachable, a 4xx
reply, timed out, the budget below spent) rolls the transaction back: nothing is stored for
that recipient and it gets `451 4.3.0`, so the MTA retries the whole delivery later. The
reason is logged before the recipient's outcome line and recorded in the user's Sieve error
log (`mda sieve errors`) in a small transaction of its own. A *permanent* refusal (5xx to
RCPT or DATA: a mistyped redirect address, say) would fail the same way on every retry,
so it is a Sieve run-time error instead (RFC 5228 §2.10.6): the error with the MTA's reply
goes into the user's error log, the message is also stored in the default mailbox (the
implicit keep, which the redirect had cancelled), the other actions stand, and the
recipient gets 250. A vacation reply that fails is logged and dropped, with no record
written, so the sender's next message gets its reply; it never defers mail.

Time. All submissions of one LMTP transaction share `MDA_SUBMISSION_BUDGET` seconds, counted
from the end of DATA; each SMTP step gets the smaller of `MDA_SUBMISSION_TIMEOUT` and the
time left. Once it is spent, every later recipient with a redirect or notification pending
gets `451 4.3.0` at once, without trying (a pending vacation reply is dropped and logged).
Without it, a stalled MTA (answering nothing) would hold each recipient for a full step
timeout, one after the other, and the replies after DATA would come after the MTA's own
LMTP timeout (Postfix `lmtp_data_done_timeout`); the MTA would then retry the whole
transaction and the recipients already stored would get their message twice.

Messages go out one after the other. When a later one fails after an earlier redirect was
taken, the delivery is rolled back as above, but that redirect's record is written on its
own, so the retry does not redirect again (a notification sent before the failure has no
record and is sent again).

The one window left open is a commit that fails after the MTA took a message: the retry
then redirects (or notifies) a second time. That was chosen over the alternatives on
purpose: submitting after the commit could lose a redirect that had already cancelled the
keep (mail lost), and submitting before the copies are written would send mail for a
delivery that then fails on quota. A duplicate is the lesser evil, and the window is only
the commit itself (the copies and quota are already written and flushed by then).

On SQLite the write lock is held while the MTA answers MAIL/RCPT/DATA, so a slow MTA slows
other deliveries; `MDA_SUBMISSION_TIMEOUT` bounds each step and `MDA_SUBMISSION_BUDGET` the
transaction's submissions together.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from mda.config import Settings
from mda.delivery.headers import normalize_line_endings
from mda.outbound import (
    OutgoingMessage,
    SubmissionConnection,
    SubmissionError,
    SubmissionTarget,
    Submitter,
    notification,
    redirect_message,
    vacation_reply,
)
from mda.outbound.compose import redirect_sender
from mda.sieve import Action, Message, Notify, Program, Redirect, Vacation
from mda.sieve.extensions.enotify import parse_mailto
from mda.sieve.spec import Call

log = logging.getLogger("mda.delivery")

OUTBOUND_ACTIONS: dict[type, str] = {Redirect: "redirect", Vacation: "vacation",
                                     Notify: "notify"}
_COMMANDS = frozenset({"redirect", "vacation", "notify"})


def make_submitter(settings: Settings) -> Submitter | None:
    """The submitter `MDA_SUBMISSION_URL` asks for, or None when it is empty."""
    if not settings.submission_url:
        return None
    return Submitter(SubmissionTarget.parse(settings.submission_url),
                     timeout=settings.submission_timeout, hostname=settings.hostname)


class OutboundSession:
    """The submissions of one LMTP transaction: its time budget and one SMTP session that
    its recipients share.

    Args:
        submitter: where to submit.
        budget: seconds all submissions may take together, from now
            (`MDA_SUBMISSION_BUDGET`).
    """

    def __init__(self, submitter: Submitter, budget: float) -> None:
        self.submitter = submitter
        self.budget = budget
        self.deadline = asyncio.get_running_loop().time() + budget
        self._connection: SubmissionConnection | None = None

    @property
    def spent(self) -> bool:
        """True once the budget is used up."""
        return asyncio.get_running_loop().time() >= self.deadline

    async def connection(self) -> SubmissionConnection:
        """The open SMTP session, opened now when there is none or the last one broke.

        Raises:
            SubmissionError: the budget is spent (nothing tried), or the MTA cannot be
                reached in time (both temporary).
        """
        if self._connection is not None and not self._connection.usable:
            await self.close()
        if self.spent:
            raise SubmissionError(f"not tried: the {self.budget:g} s this transaction's "
                                  "submissions may take (MDA_SUBMISSION_BUDGET) are spent")
        if self._connection is None:
            self._connection = await self.submitter.open(deadline=self.deadline)
        return self._connection

    async def close(self) -> None:
        """Close the session (QUIT within the budget). Never raises."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()


def outbound_kinds(actions: Iterable[Action]) -> list[str]:
    """The kinds of outbound action in a result ("notify", "redirect", "vacation"), sorted."""
    return sorted({OUTBOUND_ACTIONS[type(a)] for a in actions if type(a) in OUTBOUND_ACTIONS})


def outbound_unavailable(kinds: Iterable[str]) -> str:
    """The run-time error recorded when a result needs outbound mail and none is configured."""
    names = list(kinds)
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return (f"{listed}: not available, no outbound submission is configured "
            "(MDA_SUBMISSION_URL); the message was kept instead")


def _calls(calls: Iterable[Call]) -> Iterator[Call]:
    for call in calls:
        yield call
        yield from _calls(call.block)
        if call.orelse is not None:
            yield from _calls((call.orelse,))


def outbound_warnings(program: Program, settings: Settings) -> list[str]:
    """Warnings for a script that sends mail on a server that cannot (ManageSieve PUTSCRIPT
    answers them as `OK (WARNINGS)`, RFC 5804 §2.6).

    Args:
        program: the compiled script.
        settings: the server's settings (`submission_url`).

    Returns:
        One line per outbound command the script uses (`redirect`, `vacation`, `notify`),
        in that order, when `MDA_SUBMISSION_URL` is empty; [] otherwise or when it uses none.
        Scripts pulled in with `include` are not looked at.
    """
    if settings.submission_url:
        return []
    first_line: dict[str, int] = {}
    for call in _calls(program.commands):
        if call.name in _COMMANDS:
            first_line.setdefault(call.name, call.line)
    return [f"line {first_line[kind]}: {kind} cannot send mail on this server (no outbound "
            "submission is configured): a message reaching it is kept in the default mailbox "
            "and the error recorded"
            for kind in ("redirect", "vacation", "notify") if kind in first_line]


def redirect_key(target: str, original: Message, data: bytes) -> str:
    """The key of the "this message was redirected to `target`" record (hex SHA-256): the
    message's Message-ID, or its content when it has none, and the target address
    (domain case-insensitive, RFC 5321 §2.4)."""
    local, _, domain = target.rpartition("@")
    ids = original.raw_header_values("message-id")
    identity = ids[0].strip().encode("utf-8", "surrogateescape") if ids and ids[0].strip() \
        else hashlib.sha256(data).digest()
    digest = hashlib.sha256(b"sieve redirect\0")
    digest.update(f"{local}@{domain.lower()}".encode("utf-8", "surrogateescape") + b"\0")
    digest.update(identity)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Pending:
    """One message a recipient's result sends, with the record written once it is sent.

    Attributes:
        message: the message.
        redirect_key: for a redirect, the `sieve_duplicates` key recorded once sent
            (None when redirect records are switched off).
        vacation: for a vacation reply, the action whose (handle, sender) is recorded.
    """

    message: OutgoingMessage
    redirect_key: str | None = None
    vacation: Vacation | None = None

    def describe(self) -> str:
        """`redirect to <a@b>` and the like, for logs."""
        to = ", ".join(f"<{r}>" for r in self.message.recipients)
        noun = {"vacation": "vacation reply", "notify": "notification"}.get(
            self.message.kind, self.message.kind)
        return f"{noun} to {to} (envelope from <{self.message.sender}>)"


def _auto_submitted(message: Message) -> bool:
    return any(value.split(";")[0].strip().lower() != "no"
               for value in message.header_values("auto-submitted"))


def plan_outbound(actions: Iterable[Action], *, original: Message, user_address: str,
                  rcpt: str, mail_from: str, settings: Settings, now: datetime,
                  queue_id: str = "") -> list[Pending]:
    """Build the messages a result sends: redirects, then notifications, then the vacation
    reply (the one whose failure is tolerated goes last).

    Args:
        actions: the result's actions.
        original: the message as received, parsed (`raw` is the CRLF-normalised bytes).
        user_address: the user's address.
        rcpt: the envelope recipient as given.
        mail_from: the original envelope sender ("" for `<>`).
        settings: `redirect_envelope_sender`, `sieve_redirect_duplicate_period`, hostname.
        now: the delivery time (aware), for Date fields.
        queue_id: for log lines.

    Returns:
        The pending messages, in sending order. A notification for a message that is
        itself automatic (Auto-Submitted other than "no") is left out (RFC 5436 §2.7).
    """
    redirects: list[Pending] = []
    notifications: list[Pending] = []
    vacations: list[Pending] = []
    for action in actions:
        if isinstance(action, Redirect):
            data = normalize_line_endings(action.message.raw) if action.message is not None \
                else original.raw
            sender = redirect_sender(settings.redirect_envelope_sender, mail_from=mail_from,
                                     user_address=user_address, rcpt=rcpt)
            key = redirect_key(action.address, original, original.raw) \
                if settings.sieve_redirect_duplicate_period else None
            redirects.append(Pending(OutgoingMessage(
                "redirect", sender, (action.address,),
                redirect_message(data, user_address=user_address)), redirect_key=key))
        elif isinstance(action, Notify):
            mailto = parse_mailto(action.method)
            if mailto is None:  # the engine checked it; a method it let through is mailto
                continue
            if _auto_submitted(original):
                log.info("%s: <%s>: notification to %s not sent: the message is automatic "
                         "(Auto-Submitted, RFC 5436 §2.7)", queue_id, rcpt, action.method)
                continue
            notifications.append(Pending(notification(
                action, mailto, original, user_address=user_address,
                hostname=settings.hostname, now=now)))
        elif isinstance(action, Vacation):
            vacations.append(Pending(vacation_reply(
                action, original, user_address=user_address, hostname=settings.hostname,
                now=now), vacation=action))
    return [*redirects, *notifications, *vacations]


def redirect_expiry(settings: Settings, now: datetime) -> datetime:
    """When a redirect record written now expires."""
    return now + timedelta(seconds=settings.sieve_redirect_duplicate_period)


__all__ = ["OUTBOUND_ACTIONS", "OutboundSession", "Pending", "make_submitter", "outbound_kinds",
           "outbound_unavailable", "outbound_warnings", "plan_outbound", "redirect_expiry",
           "redirect_key"]
