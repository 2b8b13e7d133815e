"""Checks on the MAIL and RCPT arguments that aiosmtpd does not make (RFC 5321 §4.1.2).

Sans-IO: `check_path` looks at the command argument and returns the refusal to send, or
None to let aiosmtpd parse it. It refuses, before any state changes:

- a path without angle brackets (`MAIL FROM:a@b`, `RCPT TO:<a@b`): `501 5.5.4`. RFC 5321
  §4.1.2: `Reverse-path = Path / "<>"`, `Forward-path = Path`, `Path = "<" [ A-d-l ":" ]
  Mailbox ">"`; aiosmtpd also takes a bare addr-spec and an unclosed `<`;
- a path containing a control character (CR, LF, NUL, TAB, DEL ...), which no Mailbox
  production allows even inside a quoted string (`qtextSMTP` is %d32-33 / %d35-91 /
  %d93-126, `quoted-pairSMTP` is %d92 %d32-126): `501 5.1.7` at MAIL, `501 5.1.3` at RCPT;
- the null path `<>` at RCPT (only the reverse-path may be null): `501 5.1.3`;
- a path that is not valid UTF-8 (aiosmtpd decodes command arguments as UTF-8 and keeps
  undecodable bytes as lone surrogates): `501 5.1.7` / `501 5.1.3`;
- a non-ASCII path (RFC 6531 §3.3: `Mailbox` with UTF-8 local part or U-label domain) in a
  transaction without the SMTPUTF8 parameter: `553 5.6.7` (RFC 6531 §3.5). At MAIL the
  parameter counts when it is on the same command line.
"""

from __future__ import annotations

from mda import replies
from mda.replies import Reply


def _closing_bracket(text: str) -> int:
    """Index of the `>` ending a path that starts with `<` at index 0, or -1.

    A `>` inside a quoted local part (`<"a>b"@example.org>`) does not end the path.
    """
    quoted = escaped = False
    for index, char in enumerate(text[1:], start=1):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ">" and not quoted:
            return index
    return -1


def has_control(text: str) -> bool:
    """True if `text` contains a C0 control character or DEL."""
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def has_surrogate(text: str) -> bool:
    """True if `text` holds a lone surrogate, i.e. came from bytes that are not UTF-8."""
    return any("\ud800" <= char <= "\udfff" for char in text)


def _after_keyword(command: str, arg: str | None) -> str | None:
    """The argument after `FROM:` / `TO:` (leading spaces removed), or None without it."""
    keyword = command.split(" ", 1)[1]
    if arg is None or arg[:len(keyword)].upper() != keyword:
        return None
    return arg[len(keyword):].lstrip(" ")


def mail_parameters(command: str, arg: str | None) -> list[str]:
    """The ESMTP parameters after the path, upper-cased (RFC 5321 §4.1.2 `Mail-parameters`).

    Args:
        command: `"MAIL FROM:"` or `"RCPT TO:"`.
        arg: the command's argument, e.g. `"FROM:<a@b> body=8bitmime SMTPUTF8"`.

    Returns:
        e.g. `["BODY=8BITMIME", "SMTPUTF8"]`; empty when there are none or the path is
        malformed (which `check_path` refuses).
    """
    rest = _after_keyword(command, arg)
    if rest is None or not rest.startswith("<"):
        return []
    end = _closing_bracket(rest)
    return rest[end + 1:].upper().split() if end >= 0 else []


def check_path(command: str, arg: str | None, *, smtputf8: bool = False) -> Reply | None:
    """Refuse a MAIL or RCPT path that RFC 5321 §4.1.2 (or RFC 6531) does not allow.

    Args:
        command: `"MAIL FROM:"` (reverse-path) or `"RCPT TO:"` (forward-path).
        arg: the command's argument as aiosmtpd passes it (after the verb), or None.
        smtputf8: the transaction's MAIL gave the SMTPUTF8 parameter (RFC 6531 §3.4). For
            MAIL, a SMTPUTF8 parameter in `arg` itself also counts.

    Returns:
        The refusal (`501 5.5.4` missing angle brackets; `501 5.1.7` / `501 5.1.3` control
        character, invalid UTF-8 or, at RCPT, the null path; `553 5.6.7` non-ASCII without
        SMTPUTF8), or None when the argument is for aiosmtpd to parse (including when the
        `FROM:`/`TO:` keyword itself is missing, which aiosmtpd answers with its own 501
        syntax reply).
    """
    rest = _after_keyword(command, arg)
    if rest is None:
        return None
    sender = command.startswith("MAIL")
    refuse = replies.bad_sender_syntax if sender else replies.bad_recipient_syntax
    if not rest.startswith("<"):
        return replies.path_syntax(command)
    end = _closing_bracket(rest)
    if end < 0:
        return (refuse("control character in address") if has_control(rest)
                else replies.path_syntax(command))
    path = rest[1:end]
    if has_control(path):
        return refuse("control character in address")
    if not path and not sender:
        return refuse("the null path <> is not a recipient")
    if has_surrogate(path):
        return refuse("address is not valid UTF-8")
    if not path.isascii():
        if not smtputf8 and not (sender and "SMTPUTF8" in mail_parameters(command, arg)):
            return replies.address_needs_smtputf8()
    return None


__all__ = ["check_path", "has_control", "has_surrogate", "mail_parameters"]
