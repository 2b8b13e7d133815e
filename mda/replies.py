"""The one table of LMTP replies mda sends, with RFC 3463 enhanced status codes.

Every reply mda writes to an MTA is built here, so the code, the enhanced code and the
wording of a case are decided in one place. The first digit tells the MTA what to do
(RFC 5321 §4.2.1): 2 delivered, 4 retry later, 5 give up and bounce.

| case                              | reply                                  |
| --------------------------------- | -------------------------------------- |
| delivered / discarded / redirected | 250 2.0.0 <rcpt> ...                  |
| unknown user (at RCPT)            | 550 5.1.1 <rcpt> User doesn't exist    |
| Sieve reject / ereject            | 550 5.7.1 <rcpt> <reason>              |
| over quota                        | 552 5.2.2 / 452 4.2.2 (tempfail mode)  |
| message over the size limit       | 552 5.3.4                              |
| store unavailable, internal error | 451 4.3.0                              |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP/LMTP reply line.

    Attributes:
        code: the three-digit reply code (RFC 5321 §4.2).
        enhanced: the RFC 3463 enhanced status code, e.g. "2.0.0".
        text: human-readable text; must not contain CR or LF.
    """

    code: int
    enhanced: str
    text: str

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"reply code out of range: {self.code}")
        if str(self.code)[0] != self.enhanced[0]:
            raise ValueError(f"reply class {self.code} disagrees with {self.enhanced}")
        if "\r" in self.text or "\n" in self.text:
            raise ValueError("reply text must be a single line")

    @property
    def is_success(self) -> bool:
        """True for 2xx replies."""
        return 200 <= self.code < 300

    @property
    def is_temporary(self) -> bool:
        """True for 4xx replies (the MTA keeps the message queued and retries)."""
        return 400 <= self.code < 500

    def line(self) -> str:
        """The reply as sent on the wire, without CRLF: `"550 5.1.1 <a@b> ..."`."""
        return f"{self.code} {self.enhanced} {self.text}"

    def __str__(self) -> str:
        return self.line()


def _sanitize(text: str) -> str:
    """Make free text (a Sieve reject reason) safe for one reply line."""
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def delivered(rcpt: str, detail: str = "Saved") -> Reply:
    """250 2.0.0: the recipient's copy was stored, discarded or redirected, and committed."""
    return Reply(250, "2.0.0", f"<{rcpt}> {detail}")


def rcpt_ok(rcpt: str) -> Reply:
    """250 2.1.5: a RCPT TO was accepted."""
    return Reply(250, "2.1.5", f"<{rcpt}> OK")


def sender_ok(sender: str) -> Reply:
    """250 2.1.0: MAIL FROM was accepted."""
    return Reply(250, "2.1.0", f"<{sender}> OK")


def unknown_user(rcpt: str) -> Reply:
    """550 5.1.1 at RCPT: no such user here (RFC 3463 §3.2, bad destination mailbox)."""
    return Reply(550, "5.1.1", f"<{rcpt}> User doesn't exist")


def sieve_reject(rcpt: str, reason: str) -> Reply:
    """550 5.7.1 after DATA: the user's Sieve script rejected the message (RFC 5429 §2.1)."""
    reason = _sanitize(reason) or "Rejected by recipient's Sieve filter"
    return Reply(550, "5.7.1", f"<{rcpt}> {reason}")


def over_quota(rcpt: str, *, tempfail: bool) -> Reply:
    """552 5.2.2, or 452 4.2.2 in tempfail mode: the mailbox is full (RFC 3463 §3.3)."""
    if tempfail:
        return Reply(452, "4.2.2", f"<{rcpt}> Mailbox is full, try again later")
    return Reply(552, "5.2.2", f"<{rcpt}> Mailbox is full")


def message_too_big(limit: int, rcpt: str | None = None) -> Reply:
    """552 5.3.4: the message exceeds the size limit of `limit` bytes (RFC 3463 §3.4)."""
    who = f"<{rcpt}> " if rcpt else ""
    return Reply(552, "5.3.4", f"{who}Message too big for system (limit {limit} bytes)")


def temporary_failure(rcpt: str | None = None) -> Reply:
    """451 4.3.0: store unavailable or an internal error; nothing was written, retry."""
    who = f"<{rcpt}> " if rcpt else ""
    return Reply(451, "4.3.0", f"{who}Temporary internal failure, try again later")
