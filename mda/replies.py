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
| non-ASCII address without SMTPUTF8 | 553 5.6.7                             |
| BDAT/DATA/RCPT out of sequence    | 503 5.5.1                              |
| BODY=BINARYMIME (not offered)     | 555 5.5.4                              |
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


def need_rcpt() -> Reply:
    """503 5.5.1: DATA without any accepted RCPT (RFC 2033 §4.2: "the DATA command MUST fail
    with a 503 reply code")."""
    return Reply(503, "5.5.1", "Error: need RCPT command")


def service_closing(hostname: str) -> Reply:
    """421 4.3.2: the server is shutting down and closes the connection (RFC 5321 §3.8)."""
    return Reply(421, "4.3.2", f"{hostname} Service shutting down, try again later")


def printable(text: str) -> str:
    """Replace every control character (C0, DEL, C1) with `?`, so text taken from the peer
    (an address, a command argument) can be echoed in a reply line without letting it
    inject a line break or a NUL (RFC 5321 §4.2: a reply line is text ending in CRLF)."""
    return "".join("?" if ord(ch) < 32 or 127 <= ord(ch) < 160 else ch for ch in text)


def bad_sender_syntax(detail: str) -> Reply:
    """501 5.1.7 at MAIL: the reverse-path is not a valid address (RFC 3463 §3.2, "bad
    sender's mailbox address syntax"); `detail` says what is wrong."""
    return Reply(501, "5.1.7", f"Bad sender address syntax: {printable(detail)}")


def bad_recipient_syntax(detail: str) -> Reply:
    """501 5.1.3 at RCPT: the forward-path is not a valid address (RFC 3463 §3.2, "bad
    destination mailbox address syntax"); `detail` says what is wrong."""
    return Reply(501, "5.1.3", f"Bad recipient address syntax: {printable(detail)}")


def path_syntax(command: str) -> Reply:
    """501 5.5.4: MAIL/RCPT without the angle brackets RFC 5321 §4.1.2 requires
    (`Reverse-path = Path / "<>"`, `Path = "<" [ A-d-l ":" ] Mailbox ">"`)."""
    return Reply(501, "5.5.4", f"Syntax: {command}<address> (angle brackets required)")


def too_many_recipients(limit: int) -> Reply:
    """452 4.5.3: more RCPTs than the `limit` per transaction (RFC 5321 §4.5.3.1.10: the
    client sends the rest in another transaction)."""
    return Reply(452, "4.5.3", f"Too many recipients (limit {limit} per transaction)")


def send_lhlo_first() -> Reply:
    """503 5.5.1: a mail command before LHLO (RFC 2033 §4.1, RFC 5321 §4.1.4)."""
    return Reply(503, "5.5.1", "Send LHLO first")


def not_supported(command: str) -> Reply:
    """502 5.5.1: a command mda does not offer (e.g. AUTH; RFC 5321 §4.2.4)."""
    return Reply(502, "5.5.1", f"Error: {command} not supported")


def need_mail() -> Reply:
    """503 5.5.1: RCPT, DATA or BDAT before an accepted MAIL (RFC 5321 §4.1.4)."""
    return Reply(503, "5.5.1", "Error: need MAIL command")


def chunk_received(size: int, total: int) -> Reply:
    """250 2.0.0 for a BDAT chunk that is not the last (RFC 3030 §2): `size` octets taken,
    `total` octets of the message so far."""
    return Reply(250, "2.0.0", f"{size} octets received, {total} in this message")


def bdat_syntax(*, closing: bool = False) -> Reply:
    """501 5.5.4: a BDAT command that is not `BDAT <size> [LAST]` (RFC 3030 §2). With
    `closing`, the chunk size could not be read, so the octets that follow cannot be told
    from commands: the connection is closed after this reply."""
    text = "Syntax: BDAT <size> [LAST]"
    if closing:
        text += "; the chunk size is unreadable, closing the connection"
    return Reply(501, "5.5.4", text)


def data_after_bdat() -> Reply:
    """503 5.5.1: DATA in a transaction that already received BDAT chunks (RFC 3030 §3: "a
    503 "Bad sequence of commands" MUST be issued"; the client sends RSET)."""
    return Reply(503, "5.5.1", "Error: DATA after BDAT in the same transaction, send RSET")


def rcpt_after_bdat() -> Reply:
    """503 5.5.1: RCPT after the first BDAT chunk of the transaction (RFC 3030 §2: the
    message data follows the envelope)."""
    return Reply(503, "5.5.1", "Error: RCPT after BDAT in the same transaction")


def binarymime_not_offered() -> Reply:
    """555 5.5.4: `BODY=BINARYMIME` at MAIL, which LHLO does not advertise (RFC 3030 §3;
    RFC 5321 §4.1.1.11: parameter recognised but not implemented)."""
    return Reply(555, "5.5.4", "BODY=BINARYMIME is not supported; use 7BIT or 8BITMIME")


def address_needs_smtputf8() -> Reply:
    """553 5.6.7: a non-ASCII address in a transaction whose MAIL did not give the
    SMTPUTF8 parameter (RFC 6531 §3.5). The address is not echoed: it is not ASCII."""
    return Reply(553, "5.6.7", "Non-ASCII address needs MAIL FROM:<...> SMTPUTF8")


def lhlo_not_ascii() -> Reply:
    """501 5.5.4: an LHLO name that is not ASCII (RFC 6531 §3.7.1: the client names itself
    with A-labels or an address literal)."""
    return Reply(501, "5.5.4", "Syntax: LHLO hostname (ASCII; IDN as A-labels)")


def tls_already_active() -> Reply:
    """503 5.5.1: STARTTLS on a connection that already uses TLS (RFC 3207 §4.2: a client
    "MUST NOT attempt to start a TLS session if a TLS session is already active")."""
    return Reply(503, "5.5.1", "Error: TLS is already active")


def starttls_syntax() -> Reply:
    """501 5.5.4: STARTTLS takes no argument (RFC 3207 §4)."""
    return Reply(501, "5.5.4", "Syntax: STARTTLS")


# Enhanced status codes for replies aiosmtpd writes itself (syntax errors, bad sequence,
# QUIT ...). RFC 2034 §3: once ENHANCEDSTATUSCODES is advertised, every 2xx/4xx/5xx reply
# except the greeting and the LHLO/EHLO response carries one.
_DEFAULT_ENHANCED = {
    221: "2.0.0", 250: "2.0.0", 252: "2.5.0",
    421: "4.3.2", 451: "4.3.0", 452: "4.3.1",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4",
    530: "5.7.0", 550: "5.0.0", 552: "5.3.4", 553: "5.1.3", 554: "5.0.0", 555: "5.5.4",
}


def with_enhanced_code(line: str) -> str:
    """Give a reply line written by aiosmtpd an RFC 3463 enhanced status code if it lacks one.

    Args:
        line: one reply line without CRLF, e.g. `"501 Syntax: RCPT TO: <address>"`.

    Returns:
        The line with an enhanced code after the reply code (`"501 5.5.4 Syntax: ..."`), or
        the line unchanged when it already has one, is a 1xx/3xx reply, the 220 greeting, or
        is not a reply.
    """
    head, sep, rest = line[:4], line[3:4], line[4:]
    if len(line) < 3 or not head[:3].isdigit() or sep not in (" ", "-", ""):
        return line
    code = int(head[:3])
    if code // 100 not in (2, 4, 5) or code == 220:
        return line
    first = rest.split(" ", 1)[0]
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return line
    enhanced = _DEFAULT_ENHANCED.get(code, f"{code // 100}.0.0")
    return f"{code}{sep or ' '}{enhanced} {rest}".rstrip()
