"""The actions a Sieve script can leave in its result (RFC 5228 §4, RFC 5429, RFC 5230, ...).

Every action is a frozen dataclass; nothing from sievelib or the interpreter leaks into
them, so the delivery layer can apply them without knowing the engine.

editheader (RFC 5293): keep, fileinto and redirect carry `message`, the edited message as
it was when the action was executed, or None when the header had not been changed yet
(then the original message applies). `message` does not take part in equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mda.sieve.message import Message


@dataclass(frozen=True, slots=True)
class Keep:
    """Store into INBOX (RFC 5228 §4.3); also the implicit keep (§2.10.2).

    Attributes:
        flags: IMAP flags to set on the stored copy (RFC 5232), as written by the script.
        implicit: True when this is the implicit keep rather than an explicit `keep`.
        message: the message to store when editheader changed it (see the module
            docstring); None = the message as received.
    """

    flags: frozenset[str] = frozenset()
    implicit: bool = False
    message: Message | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FileInto:
    """Store into a named mailbox (RFC 5228 §4.1).

    Attributes:
        mailbox: the mailbox name (UTF-8, `/` hierarchy as the script wrote it).
        flags: IMAP flags for the stored copy (RFC 5232 §5).
        create: `:create` was given (RFC 5490 §3.2): create the mailbox if missing.
        copy: `:copy` was given (RFC 3894): the implicit keep was not cancelled by it.
        special_use: `:specialuse` (RFC 8579 §4): store into the user's mailbox that has
            this special-use attribute (e.g. "\\Junk") if one exists, else into
            `mailbox` (and, when creating it, give it the attribute). The engine already
            resolved it when the host could (`Host.special_use_mailbox`).
        message: the message to store when editheader changed it; None = as received.
    """

    mailbox: str
    flags: frozenset[str] = frozenset()
    create: bool = False
    copy: bool = False
    special_use: str | None = None
    message: Message | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Redirect:
    """Resend the message to another address (RFC 5228 §4.2).

    Attributes:
        address: the target address (`local@domain`, no angle brackets).
        copy: `:copy` was given (RFC 3894).
        message: the message to send when editheader changed it; None = as received.
    """

    address: str
    copy: bool = False
    message: Message | None = field(default=None, compare=False, repr=False)


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


@dataclass(frozen=True, slots=True)
class DuplicateMark:
    """A duplicate-tracking record the delivery layer must write (RFC 7352 §3).

    Not an action: `Result.duplicate_ids` lists them. The delivery layer records each one
    for the user ONLY when that recipient's delivery has committed (in the same database
    transaction as the stored message, or after it); a failed, rejected-by-error or
    temporarily failed delivery records nothing, so a retried message is not mistaken
    for a duplicate (RFC 7352 §3: the ID is tracked once the message was handled).

    Attributes:
        id_hash: hex SHA-256 of the handle, the :last flag and the unique ID; the key
            `Host.duplicate_seen` is later asked about (per user).
        seconds: how long the record lives, counted from this delivery (RFC 7352 §3.3).
        handle: the `:handle` given, or None.
        last: `:last` was given: the record's expiry is renewed by this delivery even if
            it already exists (RFC 7352 §3.4).
    """

    id_hash: str
    seconds: int
    handle: str | None = None
    last: bool = False


Action = Keep | FileInto | Redirect | Reject | Discard | Vacation | Notify
