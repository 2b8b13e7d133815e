"""aiosmtpd handler hooks for MAIL and RCPT, and the call into the delivery layer after DATA.

The handler is the only part of `mda/lmtp/` that talks to `mda.delivery`; the protocol class
(`mda.lmtp.protocol`) owns the wire. Every reply text comes from `mda.replies`.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mda import replies
from mda.delivery import Deliverer, RecipientOutcome, Transaction

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


class MailTransaction(Envelope):
    """aiosmtpd's `Envelope` with the id naming this mail transaction in every log line,
    from the RCPT rejections to the outcomes after DATA.

    Attributes:
        queue_id: see `new_queue_id`; a fresh one for every transaction (after LHLO, RSET
            or DATA).
    """

    def __init__(self) -> None:
        super().__init__()
        self.queue_id = new_queue_id()


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
            rejection = await self.deliverer.check_recipient(address)
        except Exception:
            log.exception("%s: internal error checking rcpt=<%s>", queue_id, address)
            rejection = replies.temporary_failure(address)
        if rejection is not None:
            log.info("%s: rcpt=<%s> result=%s at=RCPT reply=\"%s %s\"", queue_id, address,
                     rcpt_result(rejection), rejection.code, rejection.enhanced)
            return rejection.line()
        reply = replies.rcpt_ok(address).line()  # before changing the envelope
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def deliver(self, session: Session, envelope: Envelope, queue_id: str,
                      data: bytes) -> list[RecipientOutcome]:
        """Hand one received message to the delivery layer.

        Args:
            session: the connection (peer, LHLO name).
            envelope: the transaction (sender, accepted recipients in RCPT order).
            queue_id: the transaction's id for logs.
            data: the message bytes, dot-unstuffed.

        Returns:
            The delivery layer's outcomes, one per recipient (checked by the caller).
        """
        mail_from = envelope.mail_from or ""
        transaction = Transaction(
            queue_id=queue_id,
            mail_from="" if mail_from == NULL_SENDER else mail_from,
            recipients=tuple(envelope.rcpt_tos),
            data=data,
            peer=format_peer(session.peer),
            helo=session.host_name or "",
            received_at=datetime.now(UTC),
        )
        return await self.deliverer.deliver(transaction)
