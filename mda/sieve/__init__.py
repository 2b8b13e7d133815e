"""mda's Sieve engine (RFC 5228 and extensions): compile once, evaluate per recipient.

    program = compile_cached(source)                 # SieveCompileError(line, column, ...)
    message = parse_message(raw_bytes)               # never raises
    result = evaluate(program, message, Envelope(mail_from, rcpt_to),
                      Environment(...), host)        # sync, pure; never raises for script errors
    result.actions                                   # (Keep(implicit=True), FileInto(...), ...)

The package is sans-IO: no sockets, database or clock reads (`tests/sieve/test_imports.py`
checks its imports). sievelib is the parser and is used only inside this package.
"""

from __future__ import annotations

from mda.sieve.actions import (Action, Discard, DuplicateMark, FileInto, Keep, Notify,
                               Redirect, Reject, Vacation)
from mda.sieve.compiler import Program, compile_cached, compile_script
from mda.sieve.errors import SieveCompileError, SieveError, SieveRuntimeError
from mda.sieve.interpreter import Context, Envelope, Environment, Host, Result, evaluate
from mda.sieve.limits import Limits
from mda.sieve.message import Message, parse_message
from mda.sieve.registry import REGISTRY


def capabilities() -> tuple[str, ...]:
    """The SIEVE capability list this engine supports (for ManageSieve, RFC 5804 §1.7)."""
    return REGISTRY.advertised


__all__ = [
    "Action", "Context", "Discard", "DuplicateMark", "Envelope", "Environment", "FileInto",
    "Host", "Keep",
    "Limits", "Message", "Notify", "Program", "Redirect", "Reject", "Result",
    "SieveCompileError", "SieveError", "SieveRuntimeError", "Vacation", "capabilities",
    "compile_cached", "compile_script", "evaluate", "parse_message",
]
