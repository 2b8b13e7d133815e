"""The actions a Sieve script can leave in its result (RFC 5228 §4, RFC 5429, RFC 5230, ...).

Every action is a frozen dataclass; nothing from sievelib or the interpreter leaks into
them, so the delivery layer can apply them without knowing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Keep:
    """Store into INBOX (RFC 5228 §4.3); also the implicit keep (§2.10.2).

    Attributes:
        flags: IMAP flags to set on the stored copy (RFC 5232), as written by the script.
        implicit: True when this is the implicit keep rather than an explicit `keep`.
    """

    flags: frozenset[str] = frozenset()
    implicit: bool = False


@dataclass(frozen=True, slots=True)
class FileInto:
    """Store into a named mailbox (RFC 5228 §4.1).

    Attributes:
        mailbox: the mailbox name (UTF-8, `/` hierarchy as the script wrote it).
        flags: IMAP flags for the stored copy (RFC 5232 §5).
        create: `:create` was given (RFC 5490 §3.2): create the mailbox if missing.
        copy: `:copy` was given (RFC 3894): the implicit keep was not cancelled by it.
    """

    mailbox: str
    flags: frozenset[str] = frozenset()
    create: bool = False
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Redirect:
    """Resend the message to another address (RFC 5228 §4.2).

    Attributes:
        address: the target address (`local@domain`, no angle brackets).
        copy: `:copy` was given (RFC 3894).
    """

    address: str
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the message (RFC 5429 §2.1 reject, §2.2 ereject).

    Attributes:
        reason: the text given by the script (may contain line breaks).
        extended: True for `ereject`.
    """

    reason: str
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Discard:
    """Silently throw the message away (RFC 5228 §4.4); only cancels the implicit keep."""


@dataclass(frozen=True, slots=True)
class Vacation:
    """Send an auto-reply (RFC 5230 §4, RFC 6131); present only when a reply is due.

    Attributes:
        reason: the reply body (or MIME entity when `mime`).
        seconds: the period (seconds) during which the same sender gets no second reply,
            after clamping to the configured bounds.
        subject: the `:subject` given, or None.
        from_: the `:from` given, or None.
        handle: the `:handle`, or the default handle derived from the arguments (§4.2).
        mime: `:mime` was given.
        sender: the envelope sender the reply goes to.
        addresses: the user's own addresses (`:addresses` plus the envelope recipient).
    """

    reason: str
    seconds: int
    subject: str | None = None
    from_: str | None = None
    handle: str = ""
    mime: bool = False
    sender: str = ""
    addresses: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Notify:
    """Send a notification (RFC 5435 §3, mailto method RFC 5436).

    Attributes:
        method: the notification URI, e.g. `mailto:a@example.net`.
        recipients: the addresses the mailto URI names (To before Cc), decoded.
        from_: `:from`, or None.
        importance: "1", "2" or "3" (RFC 5435 §3.6).
        options: `:options`.
        message: `:message`, or None.
    """

    method: str
    recipients: tuple[str, ...] = ()
    from_: str | None = None
    importance: str = "2"
    options: tuple[str, ...] = ()
    message: str | None = None


Action = Keep | FileInto | Redirect | Reject | Discard | Vacation | Notify
