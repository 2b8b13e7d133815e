"""fileinto — RFC 5228 §4.1 (optional action of the base specification).

`fileinto [:copy] [:create] [:flags <list>] <mailbox>` stores the message into a mailbox
and cancels the implicit keep (unless `:copy`, RFC 3894). Complete. The dry run lists the
store even when the mailbox does not exist; the delivery layer falls back to INBOX unless
`:create` or autocreate. A mailbox name that is empty or computed at run time as
invalid UTF-8 is a run-time error (RFC 5228 §4.1: the script "MUST fail"). `:specialuse`
(RFC 8579) is resolved by `special_use.fileinto_target`.
"""

from __future__ import annotations

from typing import Any

from mda.sieve.actions import FileInto
from mda.sieve.core import current_flags
from mda.sieve.errors import SieveRuntimeError
from mda.sieve.spec import Call, CommandSpec, Extension
from mda.sieve.strings import Template


def mailbox_problem(name: str) -> str | None:
    """Why `name` cannot be a mailbox name, or None if it can (RFC 3501 §5.1)."""
    if name == "":
        return "empty mailbox name"
    if any(ord(ch) < 0x20 or ch == "\x7f" for ch in name):
        return "control character in mailbox name"
    if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in name):
        return "mailbox name is not valid UTF-8"
    return None


def _validate(call: Call, compiler: Any) -> Call:
    name = call.args[0]
    if not isinstance(name, Template):
        problem = mailbox_problem(name)
        if problem:
            compiler.error("bad-value", f"fileinto: {problem} (RFC 5228 §4.1)")
    return call


def _run(ctx: Any, call: Call) -> None:
    name = ctx.string(call.args[0])
    problem = mailbox_problem(name)
    if problem:
        raise SieveRuntimeError(f"fileinto: {problem}", call.line)
    from mda.sieve.extensions.special_use import fileinto_target

    name, special_use = fileinto_target(ctx, call, name)
    ctx.add(FileInto(name, flags=current_flags(ctx, call), create=bool(call.tag(":create")),
                     copy=bool(call.tag(":copy")), special_use=special_use), call)


EXTENSION = Extension(
    name="fileinto",
    commands=(CommandSpec("fileinto", "command", ("string",), extension="fileinto",
                          validate=_validate, run=_run),),
)
