"""aiosmtpd handler hooks for MAIL and RCPT, and the call into the delivery layer after DATA.

The handler is the only part of `mda/lmtp/` that talks to `mda.delivery`; the protocol class
(`mda.lmtp.protocol`) owns the wire. Every reply text comes from `mda.replies`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mda import metrics, replies
from mda.delivery import Deliverer, RecipientOutcome, Transaction
from mda.lmtp.chunking import ChunkedMessage

log = logging.getLogger("mda.lmtp")

NULL_SENDER = "<>"


def new_queue_id() -> str:
    """A short random id naming one mail transaction in logs (12 lower-case base32 chars).

    Returns:
        60 random bits as text; collisions are negligible for log correlation.
    """
    alphabet = "0123456789bcdfghjklmnpqrstvwxz"
    number = secrets.randbits(60)
    chars = []
    for _ in range(12):
        number, digit = divmod(number, len(alphabet))
        chars.append(alphabet[digit])
    return "".join(chars)


def format_peer(peer: Any) -> str:
    """Text for the peer address aiosmtpd gives: `"192.0.2.1:2525"`, `"[::1]:2525"` or
    `"unix"` for a unix-domain socket (whose peer name is empty).

    Args:
        peer: `transport.get_extra_info("peername")`, a tuple for TCP or a str/None.

    Returns:
        A printable, single-line peer description.
    """
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer) if peer else "unix"


def received_protocol(*, utf8: bool, tls: bool) -> str:
    """The `with` keyword of the Received header for this transaction: `LMTP`, `LMTPS`
    (after STARTTLS, RFC 3848 §2), `UTF8LMTP` or `UTF8LMTPS` (SMTPUTF8, RFC 6531 §3.7.3).
    mda's LMTP has no AUTH, so never the `A` forms."""
    return ("UTF8" if utf8 else "") + "LMTP" + ("S" if tls else "")


class MailTransaction(Envelope):
    """aiosmtpd's `Envelope` with the id naming this mail transaction in every log line,
    from the RCPT rejections to the outcomes after DATA, and the BDAT chunks received.

    Attributes:
        queue_id: see `new_queue_id`; a fresh one for every transaction (after LHLO, RSET,
            DATA or the last BDAT chunk).
        chunks: the message so far when the transaction uses BDAT (RFC 3030), else None.
            A new transaction starts without, so RSET discards the chunks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.queue_id = new_queue_id()
        self.chunks: ChunkedMessage | None = None


def recipient_key(address: str) -> str:
    """The form under which two RCPT addresses of one transaction are the same recipient:
    the local part as given (RFC 5321 §2.4: only the receiving host may fold its case, and
    mda does not) and the domain lower-cased (domains are case-insensitive)."""
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{domain.lower()}"


def unique_recipients(recipients: Sequence[str]) -> tuple[str, ...]:
    """The recipients with repeats (by `recipient_key`) removed, first occurrence kept, in
    RCPT order."""
    seen: dict[str, str] = {}
    for rcpt in recipients:
        seen.setdefault(recipient_key(rcpt), rcpt)
    return tuple(seen.values())


def outcomes_per_rcpt(recipients: Sequence[str], delivered: Sequence[str],
                      outcomes: Sequence[RecipientOutcome]
                      ) -> list[RecipientOutcome | None]:
    """Map the outcomes of the unique recipients back onto every RCPT, repeats included.

    Args:
        recipients: the accepted RCPT addresses, in RCPT order, repeats included.
        delivered: `unique_recipients(recipients)`, what the delivery layer was given.
        outcomes: the delivery layer's answer for `delivered`.

    Returns:
        One entry per recipient: the outcome of its first occurrence (named after this
        occurrence), or None when the delivery layer gave none for it (answered 451).
    """
    if len(outcomes) > len(delivered):
        log.error("delivery returned %d outcomes for %d recipients; extra ones ignored",
                  len(outcomes), len(delivered))
    by_key: dict[str, RecipientOutcome] = {}
    for index, rcpt in enumerate(delivered):
        if index < len(outcomes) and outcomes[index].recipient == rcpt:
            by_key[recipient_key(rcpt)] = outcomes[index]
    mapped: list[RecipientOutcome | None] = []
    for rcpt in recipients:
        outcome = by_key.get(recipient_key(rcpt))
        mapped.append(None if outcome is None else replace(outcome, recipient=rcpt))
    return mapped


def rcpt_result(reply: replies.Reply) -> str:
    """The `result=` word logged for a refused RCPT: `unknown_user`, `over_quota`, `error`
    (a temporary failure of ours or of the store) or `rejected`."""
    if reply.enhanced == "5.1.1":
        return "unknown_user"
    if reply.enhanced.endswith(".2.2"):
        return "over_quota"
    if reply.enhanced == "4.3.0":
        return "error"
    return "rejected"


class DeliveryHandler:
    """aiosmtpd hooks bound to one `Deliverer`.

    Args:
        deliverer: answers RCPT (`check_recipient`) and delivers after DATA (`deliver`).
        max_message_size: the size limit in bytes; `MAIL FROM:<...> SIZE=n` above it is
            refused with `552 5.3.4` (RFC 1870 §6.1).
    """

    def __init__(self, deliverer: Deliverer, max_message_size: int) -> None:
        self.deliverer = deliverer
        self.max_message_size = max_message_size

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        """MAIL FROM (RFC 5321 §4.1.1.2) with the SIZE parameter (RFC 1870 §6).

        aiosmtpd has already checked the syntax and that SIZE is a number. The null reverse
        path `<>` is kept as the text "<>" in the envelope (aiosmtpd treats an empty sender
        as "no MAIL yet") and handed to delivery as "".

        Returns:
            `250 2.1.0`, or `552 5.3.4` when the declared size exceeds the limit.
        """
        for option in mail_options:
            name, _, value = option.partition("=")
            if name == "SIZE" and value.isdigit() and int(value) > self.max_message_size:
                return replies.message_too_big(self.max_message_size).line()
        # Build the reply before changing the envelope: a failure must leave no state.
        reply = replies.sender_ok("" if address == NULL_SENDER else address).line()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        """RCPT TO (RFC 5321 §4.1.1.3; RFC 2033 §4.1): ask the delivery layer.

        Every refusal is logged as one line like the outcomes after DATA (queue id,
        recipient, result, reply); an exception in the delivery layer is answered
        `451 4.3.0` and logged with its traceback, never sent to the peer.

        Returns:
            `250 2.1.5` and the address joins the transaction, or the delivery layer's
            rejection (`550 5.1.1` unknown user, over-quota reply, `451 4.3.0` store down).
        """
        queue_id = getattr(envelope, "queue_id", "-")
        try:
            rejection = await self.deliverer.check_recipient(address, queue_id)
        except Exception:
            log.exception("%s: internal error checking rcpt=<%s>", queue_id, address)
            rejection = replies.temporary_failure(address)
        if rejection is not None:
            result = rcpt_result(rejection)
            metrics.recipient_outcome(result, "rcpt")
            log.info("%s: rcpt=<%s> result=%s at=RCPT reply=\"%s %s\"", queue_id, address,
                     result, rejection.code, rejection.enhanced)
            return rejection.line()
        reply = replies.rcpt_ok(address).line()  # before changing the envelope
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def deliver(self, session: Session, envelope: Envelope, queue_id: str,
                      data: bytes) -> list[RecipientOutcome | None]:
        """Hand one received message to the delivery layer.

        A recipient given twice in the transaction (same `recipient_key`) is delivered once
        and answered twice with the same outcome: RFC 2033 §4.2 wants one reply per
        successful RCPT, and one stored copy is what the user expects (Dovecot does the
        same).

        Args:
            session: the connection (peer, LHLO name).
            envelope: the transaction (sender, accepted recipients in RCPT order).
            queue_id: the transaction's id for logs.
            data: the message bytes (dot-unstuffed after DATA; the chunks joined after BDAT).

        Returns:
            One entry per accepted RCPT, in order: its outcome, or None where the delivery
            layer broke its contract and returned none (answered 451 by the caller).
        """
        mail_from = envelope.mail_from or ""
        recipients = unique_recipients(envelope.rcpt_tos)
        transaction = Transaction(
            queue_id=queue_id,
            mail_from="" if mail_from == NULL_SENDER else mail_from,
            recipients=recipients,
            data=data,
            peer=format_peer(session.peer),
            helo=session.host_name or "",
            received_at=datetime.now(UTC),
            protocol=received_protocol(utf8=envelope.smtp_utf8, tls=session.ssl is not None),
        )
        outcomes = await self.deliverer.deliver(transaction)
        return outcomes_per_rcpt(envelope.rcpt_tos, recipients, outcomes)
