"""The messages mda sends on a Sieve script's behalf, built as bytes ready for SMTP DATA.

- `redirect_message` (RFC 5228 §4.2): the message as received (or as editheader left it),
  with `X-Sieve-Redirected-From: <user>` added on top, which the user's next delivery of it
  uses to refuse a second redirect (a loop), and any `Return-Path` removed (RFC 5321 §4.4:
  only final delivery adds one).
- `vacation_reply` (RFC 5230 §5, RFC 3834 §3): `Auto-Submitted: auto-replied`,
  `In-Reply-To` and `References` pointing at the original, `Subject: Auto: <original
  subject>` unless `:subject` is given ("Automated reply" when the original has none),
  `From:` the `:from` address or the user's address as the original named it in a
  recipient field, `To:` the original envelope sender; the body is the reason as UTF-8
  text, or with `:mime` the MIME entity the reason holds (its `Content-*` fields kept).
- `notification` (RFC 5436 §2.7): `Auto-Submitted: auto-notified; owner-email="<user>"`,
  `Subject:` from `:message`, else the URI's `subject`, else the original subject; `To:`
  and `Cc:` from the URI; the URI's `body` or a short summary of the triggering message;
  `Importance`/`X-Priority` for `:importance` "1" and "3". Other URI header fields are
  ignored (§2.7: `from`, `auto-submitted`, `received`, `message-id`, `date` MUST be).

Every message gets a fresh `Date` and `Message-ID`. Text that is not ASCII goes into
RFC 2047 encoded words in header fields and quoted-printable UTF-8 in bodies, so the
result is 7-bit unless a `:mime` entity brings 8-bit data. Control characters from the
original message or the script never reach a header line.
"""

from __future__ import annotations

import email.charset
import email.header
import email.quoprimime
import email.utils
import re
from dataclasses import dataclass
from datetime import datetime

from mda.sieve.actions import Notify, Vacation
from mda.sieve.addresses import parse_address, parse_address_list
from mda.sieve.core import REDIRECTED_FROM, normalise_redirect
from mda.sieve.extensions.enotify import Mailto
from mda.sieve.extensions.vacation import RECIPIENT_HEADERS
from mda.sieve.message import Message, split_header

DEFAULT_VACATION_SUBJECT = "Automated reply"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MSG_ID = re.compile(r"<[^<>\s]+>")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_LINE = 998  # octets per line, RFC 5322 §2.1.1


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to hand to the MTA.

    Attributes:
        kind: "redirect", "vacation" or "notify" (for logs and the failure policy).
        sender: the envelope sender (MAIL FROM); "" for the null reverse-path `<>`.
        recipients: the envelope recipients (RCPT TO), at least one.
        data: the message, CRLF line endings, not dot-stuffed.
    """

    kind: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("an outgoing message needs at least one recipient")


def _clean(text: str) -> str:
    """One header line's worth of text: runs of control characters (CR, LF, TAB ...)
    become one space."""
    return _CONTROL.sub(" ", text).strip()


def _unstructured(name: str, value: str) -> bytes:
    """`Name: value` folded, with RFC 2047 encoded words when the value is not ASCII."""
    value = _clean(value)
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = email.header.Header(value, charset, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _mailbox(text: str) -> tuple[str, str] | None:
    """(display name, addr-spec) of one RFC 5322 mailbox, or None when it does not parse."""
    entries = parse_address_list(text)
    if len(entries) != 1 or entries[0] is None:
        return None
    name, _ = email.utils.parseaddr(_clean(text))
    return _clean(name), entries[0].all


def _address_field(name: str, mailboxes: list[tuple[str, str]]) -> bytes:
    """An address field (From, To, Cc); display names become encoded words when needed."""
    rendered = []
    for display, addr in mailboxes:
        text = email.utils.formataddr((display, addr), charset="utf-8") if display \
            else addr
        rendered.append(text)
    return f"{name}: {', '.join(rendered)}\r\n".encode("utf-8")


def _ids_field(name: str, ids: list[str]) -> bytes:
    """A field of message identifiers, one per folded line after the first."""
    return (f"{name}: " + "\r\n ".join(ids) + "\r\n").encode("ascii", "replace")


def _message_ids(value: str) -> list[str]:
    return [m for m in _MSG_ID.findall(value) if m.isascii()]


def _common(*, now: datetime, hostname: str) -> bytes:
    domain = re.sub(r"[^A-Za-z0-9.-]", "", hostname) or "localhost"
    return (f"Date: {email.utils.format_datetime(now)}\r\n"
            f"Message-ID: {email.utils.make_msgid(domain=domain)}\r\n").encode("ascii")


def _own_id(original: Message) -> str | None:
    """The original's Message-ID (`<...>`), or None when it has no usable one."""
    return next((ids[0] for value in original.raw_header_values("message-id")
                 if (ids := _message_ids(value))), None)


def _thread(original: Message) -> bytes:
    """In-Reply-To and References for a reply to `original` (RFC 5322 §3.6.4)."""
    own = _own_id(original)
    if own is None:
        return b""
    earlier = [i for value in original.raw_header_values("references")
               for i in _message_ids(value)]
    if not earlier:
        earlier = [i for value in original.raw_header_values("in-reply-to")
                   for i in _message_ids(value)][:1]
    return _ids_field("In-Reply-To", [own]) + _ids_field("References", [*earlier, own])


def _text_body(text: str) -> bytes:
    """Content fields and body for plain text: 7bit when it is short-lined ASCII, else
    quoted-printable UTF-8 (RFC 2045 §6.7)."""
    text = _LINE_BREAK.sub("\r\n", text)
    if text.isascii() and all(len(line) <= MAX_LINE for line in text.split("\r\n")):
        fields = (b"Content-Type: text/plain; charset=us-ascii\r\n"
                  b"Content-Transfer-Encoding: 7bit\r\n")
        body = text.encode("ascii")
    else:
        fields = (b"Content-Type: text/plain; charset=utf-8\r\n"
                  b"Content-Transfer-Encoding: quoted-printable\r\n")
        latin = text.encode("utf-8", "surrogateescape").decode("latin-1")
        body = email.quoprimime.body_encode(latin, eol="\r\n").encode("ascii")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b"MIME-Version: 1.0\r\n" + fields + b"\r\n" + body


def _mime_body(entity: str) -> bytes:
    """Content fields and body of a `:mime` reason (RFC 5230 §4.4): its `Content-*` fields
    and body as the script wrote them; other fields of the entity are dropped."""
    raw = _LINE_BREAK.sub("\r\n", entity).encode("utf-8", "surrogateescape")
    fields, _, body = split_header(raw)
    content = b"".join(f.name.encode("ascii", "replace") + b":" + f.raw
                       for f in fields if f.name.lower().startswith("content-"))
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b"MIME-Version: 1.0\r\n" + content + b"\r\n" + body


def redirect_message(data: bytes, *, user_address: str) -> bytes:
    """The bytes to send for a redirect (RFC 5228 §4.2).

    Args:
        data: the message as received or as editheader left it (CRLF line endings).
        user_address: the address of the user whose script redirects.

    Returns:
        `X-Sieve-Redirected-From: <user_address>` followed by the message without any
        top-level `Return-Path` field.
    """
    fields, header, body = split_header(data)
    if any(f.name.lower() == "return-path" for f in fields):
        kept = b"".join(f.name.encode("utf-8", "surrogateescape") + b":" + f.raw
                        for f in fields if f.name.lower() != "return-path")
        data = kept + data[len(header):]
    line = f"{REDIRECTED_FROM}: <{_clean(user_address)}>\r\n".encode("utf-8")
    return line + data


SENDER_POLICIES = ("sender", "recipient", "orig_recipient")


def parse_sender_policy(text: str) -> str:
    """Check an `MDA_REDIRECT_ENVELOPE_SENDER` value.

    Args:
        text: "sender", "recipient", "orig_recipient" (any case), "<local@domain>" or "<>".

    Returns:
        The value as `redirect_sender` takes it (keywords lower-cased, white space removed).

    Raises:
        ValueError: anything else; the message lists the accepted forms.
    """
    value = text.strip()
    if value.lower() in SENDER_POLICIES:
        return value.lower()
    if value == "<>" or (value.startswith("<") and value.endswith(">")
                         and normalise_redirect(value[1:-1]) is not None):
        return value
    raise ValueError(f"{text!r} is not a redirect envelope sender: use sender, recipient, "
                     "orig_recipient, <local@domain> or <>")


def redirect_sender(policy: str, *, mail_from: str, user_address: str, rcpt: str) -> str:
    """The MAIL FROM of a redirect under `policy` (see `parse_sender_policy`).

    Args:
        policy: a value `parse_sender_policy` returned.
        mail_from: the original envelope sender ("" for `<>`).
        user_address: the user's address.
        rcpt: the envelope recipient as given (subaddress included).

    Returns:
        The envelope sender, "" for `<>`. "sender" keeps `<>` for a message that came with
        it, so a redirected bounce can never bounce back (RFC 5321 §4.5.5).
    """
    if policy == "sender":
        return mail_from
    if policy == "recipient":
        return user_address
    if policy == "orig_recipient":
        return rcpt
    return policy[1:-1]


def _sender_mailbox(original: Message, own: tuple[str, ...], user_address: str
                    ) -> tuple[str, str]:
    """The user's address as the original named it in a recipient field (RFC 5230 §5:
    the reply comes from the address the mail was sent to), else the user's address."""
    wanted = {a.lower() for a in own}
    for name in RECIPIENT_HEADERS:
        for raw in original.raw_header_values(name):
            for addr in parse_address_list(raw):
                if addr is not None and addr.all.lower() in wanted:
                    return "", addr.all
    return "", user_address


def vacation_reply(action: Vacation, original: Message, *, user_address: str, hostname: str,
                   now: datetime) -> OutgoingMessage:
    """The vacation auto-reply to `action.sender` (RFC 5230 §4.3–§4.4, §5).

    Args:
        action: the engine's `Vacation` action (reason, :subject, :from, :mime, sender).
        original: the message being replied to.
        user_address: the user's address (From when `:from` is absent or invalid).
        hostname: our host name, for the Message-ID.
        now: the reply's Date (aware).

    Returns:
        The message, envelope sender `<>` (RFC 5230 §5.1), recipient the original
        envelope sender (§5.2).
    """
    sender = _mailbox(action.from_) if action.from_ else None
    if sender is None:
        sender = _sender_mailbox(original, action.addresses, user_address)
    to = parse_address(action.sender)
    to_addr = to.all if to is not None else action.sender
    if action.subject is not None:
        subject = action.subject
    else:
        subjects = original.header_values("subject")
        subject = f"Auto: {_clean(subjects[0])}" if subjects and _clean(subjects[0]) \
            else DEFAULT_VACATION_SUBJECT
    head = (_common(now=now, hostname=hostname)
            + _address_field("From", [sender])
            + _address_field("To", [("", to_addr)])
            + _unstructured("Subject", subject)
            + _thread(original)
            + b"Auto-Submitted: auto-replied (vacation)\r\n")
    body = _mime_body(action.reason) if action.mime else _text_body(action.reason)
    return OutgoingMessage("vacation", "", (action.sender,), head + body)


def _summary(original: Message, user_address: str) -> str:
    lines = [f"New mail for {user_address}.", ""]
    for name in ("From", "Subject", "Date"):
        values = original.header_values(name)
        if values:
            lines.append(f"{name}: {_clean(values[0])}")
    return "\r\n".join(lines) + "\r\n"


IMPORTANCE = {"1": ("high", "1 (Highest)"), "3": ("low", "5 (Lowest)")}


def notification(action: Notify, mailto: Mailto, original: Message, *, user_address: str,
                 hostname: str, now: datetime) -> OutgoingMessage:
    """The notification message of `notify :method "mailto:..."` (RFC 5436 §2.7).

    Args:
        action: the engine's `Notify` action.
        mailto: its method parsed (`mda.sieve.extensions.enotify.parse_mailto`).
        original: the triggering message.
        user_address: the user's address (From when `:from` is absent or invalid, and
            the owner-email of Auto-Submitted, §2.7.1).
        hostname: our host name, for the Message-ID.
        now: the Date (aware).

    Returns:
        The message, envelope sender `<>`, recipients the URI's To and Cc addresses.
    """
    sender = (_mailbox(action.from_) if action.from_ else None) or ("", user_address)
    if action.message is not None:
        subject = action.message
    elif mailto.header("subject") is not None:
        subject = mailto.header("subject") or ""
    else:
        subjects = original.header_values("subject")
        subject = subjects[0] if subjects else ""
    owner = _clean(user_address).replace("\\", "\\\\").replace('"', '\\"')
    head = (f'Auto-Submitted: auto-notified; owner-email="{owner}"\r\n'.encode("utf-8")
            + _common(now=now, hostname=hostname) + _address_field("From", [sender]))
    if mailto.to:  # with only cc= recipients there is no To field, as RFC 5322 allows
        head += _address_field("To", [("", a) for a in mailto.to])
    if mailto.cc:
        head += _address_field("Cc", [("", a) for a in mailto.cc])
    head += _unstructured("Subject", subject or "Notification")
    own = _own_id(original)
    if own is not None:
        head += _ids_field("References", [own])
    if action.importance in IMPORTANCE:
        importance, priority = IMPORTANCE[action.importance]
        head += f"Importance: {importance}\r\nX-Priority: {priority}\r\n".encode("ascii")
    body_text = mailto.header("body")
    body = _text_body(body_text if body_text is not None else _summary(original, user_address))
    return OutgoingMessage("notify", "", tuple(action.recipients), head + body)


__all__ = ["DEFAULT_VACATION_SUBJECT", "SENDER_POLICIES", "OutgoingMessage", "notification",
           "parse_sender_policy", "redirect_message", "redirect_sender", "vacation_reply"]
