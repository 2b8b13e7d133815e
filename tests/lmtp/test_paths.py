"""`check_path` without I/O: which MAIL/RCPT arguments are refused before aiosmtpd parses
them (RFC 5321 §4.1.2), and with which reply."""

from __future__ import annotations

import pytest

from mda.lmtp.paths import check_path


@pytest.mark.parametrize("command,arg,expected", [
    ("MAIL FROM:", "FROM:<a@b.example>", None),
    ("MAIL FROM:", "from: <a@b.example> SIZE=10", None),
    ("MAIL FROM:", "FROM:<>", None),
    ("MAIL FROM:", 'FROM:<"a>b"@b.example>', None),
    ("MAIL FROM:", "FROM:<@relay.example:a@b.example>", None),
    ("MAIL FROM:", "TO:<a@b.example>", None),      # aiosmtpd's own 501
    ("MAIL FROM:", None, None),
    ("MAIL FROM:", "FROM:a@b.example", "501 5.5.4"),
    ("MAIL FROM:", "FROM:<a@b.example", "501 5.5.4"),
    ("MAIL FROM:", 'FROM:<"a\rb"@b.example>', "501 5.1.7"),
    ("MAIL FROM:", "FROM:<a\x00b@b.example", "501 5.1.7"),
    ("RCPT TO:", "TO:<bob@example.org>", None),
    ("RCPT TO:", "TO:<>", "501 5.1.3"),
    ("RCPT TO:", "TO:<b\rob@example.org>", "501 5.1.3"),
    ("RCPT TO:", "TO:bob@example.org", "501 5.5.4"),
])
def test_check_path(command: str, arg: str | None, expected: str | None) -> None:
    reply = check_path(command, arg)
    assert (None if reply is None else f"{reply.code} {reply.enhanced}") == expected
    if reply is not None:
        assert not any(ord(c) < 32 for c in reply.line())
