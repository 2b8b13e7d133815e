"""Checks on the MAIL and RCPT arguments that aiosmtpd does not make (RFC 5321 §4.1.2).

Sans-IO: `check_path` looks at the command argument and returns the refusal to send, or
None to let aiosmtpd parse it. It refuses, before any state changes:

- a path without angle brackets (`MAIL FROM:a@b`, `RCPT TO:<a@b`): `501 5.5.4`. RFC 5321
  §4.1.2: `Reverse-path = Path / "<>"`, `Forward-path = Path`, `Path = "<" [ A-d-l ":" ]
  Mailbox ">"`; aiosmtpd also takes a bare addr-spec and an unclosed `<`;
- a path containing a control character (CR, LF, NUL, TAB, DEL ...), which no Mailbox
  production allows even inside a quoted string (`qtextSMTP` is %d32-33 / %d35-91 /
  %d93-126, `quoted-pairSMTP` is %d92 %d32-126): `501 5.1.7` at MAIL, `501 5.1.3` at RCPT;
- the null path `<>` at RCPT (only the reverse-path may be null): `501 5.1.3`.
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


def check_path(command: str, arg: str | None) -> Reply | None:
    """Refuse a MAIL or RCPT path that RFC 5321 §4.1.2 does not allow.

    Args:
        command: `"MAIL FROM:"` (reverse-path) or `"RCPT TO:"` (forward-path).
        arg: the command's argument as aiosmtpd passes it (after the verb), or None.

    Returns:
        The refusal (`501 5.5.4` missing angle brackets; `501 5.1.7` / `501 5.1.3` control
        character or, at RCPT, the null path), or None when the argument is for aiosmtpd to
        parse (including when the `FROM:`/`TO:` keyword itself is missing, which aiosmtpd
        answers with its own 501 syntax reply).
    """
    keyword = command.split(" ", 1)[1]
    if arg is None or arg[:len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword):].lstrip(" ")
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
    return None


__all__ = ["check_path", "has_control"]
