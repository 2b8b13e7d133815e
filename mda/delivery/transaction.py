"""The values that cross the LMTP ↔ delivery boundary: one `Transaction` in, one
`RecipientOutcome` per accepted recipient out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mda.replies import Reply

RESULTS = ("stored", "discarded", "redirected", "rejected", "over_quota", "unknown_user",
           "error")
"""The values of `RecipientOutcome.result`."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """One received LMTP transaction (RFC 2033 §4.2), after DATA.

    Attributes:
        queue_id: the transaction's id, for logs and the Received header.
        mail_from: the envelope sender, "" for the null reverse-path `<>`.
        recipients: the accepted RCPT TO addresses, in RCPT order, as given.
        data: the message as received (dot-unstuffed); any line endings.
        peer: the client, as `"192.0.2.1:2525"`, `"[2001:db8::1]:2525"` or `"unix"`.
        helo: the LHLO name the client gave.
        received_at: when DATA ended (aware UTC).
        protocol: the `with` keyword of the Received header (RFC 3848, RFC 6531 §3.7.3):
            `LMTP`, `LMTPS` after STARTTLS, `UTF8LMTP`/`UTF8LMTPS` for an SMTPUTF8
            transaction.
    """

    queue_id: str
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    peer: str
    helo: str
    received_at: datetime
    protocol: str = "LMTP"


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """What happened to one recipient's copy.

    Attributes:
        recipient: the RCPT TO address as given.
        reply: the LMTP reply for this recipient (RFC 2033 §4.2: one per recipient).
        result: one of `RESULTS`: "stored", "discarded", "redirected" (no copy kept, a
            redirect sent), "rejected" (Sieve reject),
            "over_quota", "unknown_user" (deleted since RCPT), "error" (451, retry).
        mailboxes: the mailboxes a copy was stored into, in order.
        elapsed_ms: milliseconds spent on this recipient.
    """

    recipient: str
    reply: Reply
    result: str
    mailboxes: tuple[str, ...]
    elapsed_ms: float
