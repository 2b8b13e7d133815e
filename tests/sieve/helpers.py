"""Shared helpers for the Sieve unit tests: run a script on a message in-process."""

from __future__ import annotations

from typing import Any

import pytest

from mda.sieve import (Envelope, Environment, Limits, Result, SieveCompileError,
                       compile_script, evaluate, parse_message)
from mda.sieve.dryrun import MailboxList, result_json

MESSAGE = (b"From: \"Alice Example\" <alice@example.org>\r\n"
           b"To: Bob <bob@example.com>, team: carol@ops.example.com, dave@example.org;\r\n"
           b"Subject: Quarterly report\r\n"
           b"X-Num: 0042\r\n"
           b"\r\n"
           b"Hello Bob,\r\nhere is the report.\r\n")


def run(script: str, message: bytes = MESSAGE, *, mail_from: str = "alice@example.org",
        rcpt_to: str = "bob+work@example.com", limits: Limits | None = None,
        environment: Environment | None = None, host: Any = None) -> Result:
    """Compile and evaluate; by default the mailboxes INBOX, Archive and Work exist."""
    program = compile_script(script, limits=limits)
    return evaluate(program, parse_message(message), Envelope(mail_from, rcpt_to),
                    environment,
                    host if host is not None else MailboxList(frozenset({"Archive", "Work"})),
                    limits=limits)


def refused(script: str, kind: str | None = None) -> SieveCompileError:
    """Compile a script that must be refused; returns the error, checking its kind if given."""
    with pytest.raises(SieveCompileError) as exc:
        compile_script(script)
    if kind is not None:
        assert exc.value.kind == kind, (script, exc.value)
    return exc.value


def stores(script: str, message: bytes = MESSAGE, **kwargs) -> list[str]:
    """The mailboxes stored into, sorted (as the dry run lists them)."""
    report = result_json(run(script, message, **kwargs))
    return sorted(a["mailbox"] for a in report["actions"] if a["action"] == "store")
