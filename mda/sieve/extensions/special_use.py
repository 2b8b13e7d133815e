"""special-use — RFC 8579 (§3 the specialuse_exists test, §4 `fileinto :specialuse`).

- `specialuse_exists [<mailbox>] <special-use-attrs>` asks the host
  (`Host.special_use_exists(mailbox or None, attrs)`): without a mailbox, whether every
  attribute is assigned to some mailbox of the user; with one, whether that mailbox exists
  and has them all (§3). A mailbox name that cannot be a mailbox makes the test false with
  a warning, as in Pigeonhole.
- `fileinto :specialuse <attr> <mailbox>` files into the user's mailbox that has the
  special-use attribute; the engine asks `Host.special_use_mailbox(attr)` and, when the
  host names one, the FileInto targets it (so duplicate stores merge, RFC 5228 §2.10.3).
  Otherwise the FileInto keeps the named mailbox as the fallback (§4) and carries
  `special_use=attr`, so the delivery layer can still look the attribute up and, when it
  creates the fallback mailbox (`:create`, RFC 5490), assign the attribute to it. A dry
  run without such a host lists the named mailbox, as Pigeonhole's sieve-test does.
- An attribute must be `\\` followed by an IMAP atom (RFC 6154 §6 use-attr); a constant
  one that is not is a compile error, a computed one a run-time error. Attributes compare
  case-insensitively (the host's business).

Complete.
"""

from __future__ import annotations

import re
from typing import Any

from mda.sieve.errors import SieveRuntimeError
from mda.sieve.interpreter import host_call
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec

#: RFC 6154 §6 use-attr-ext = "\" atom (RFC 3501 §9 ATOM-CHAR: no atom-specials)
USE_ATTR = re.compile(r"\\[^\x00-\x20\x7f(){%*\"\\\]]+")


def valid_use(attr: str) -> bool:
    """Is this a syntactically valid special-use attribute (RFC 6154 §6)?"""
    return USE_ATTR.fullmatch(attr) is not None


def _check_constants(compiler: Any, what: str, values: Any) -> None:
    for value in values:
        if isinstance(value, str) and not valid_use(value):
            compiler.error("bad-value", f"{what}: \"{value}\" is not a special-use "
                           "attribute (RFC 8579 §3, RFC 6154 §6: \\ and an atom)")


def _check_tag(call: Call, compiler: Any) -> None:
    _check_constants(compiler, "fileinto :specialuse", (call.tag(":specialuse"),))


def _checked(ctx: Any, call: Call, attrs: list[str]) -> list[str]:
    for attr in attrs:
        if not valid_use(attr):
            raise SieveRuntimeError(f"\"{attr}\" is not a special-use attribute "
                                    "(RFC 6154 §6)", call.line)
    return attrs


def fileinto_target(ctx: Any, call: Call, mailbox: str) -> tuple[str, str | None]:
    """The mailbox a fileinto stores into and its :specialuse attribute (RFC 8579 §4).

    Returns:
        (mailbox, attribute or None): the host's mailbox with that attribute when it
        names one, else `mailbox` itself.

    Raises:
        SieveRuntimeError: a computed attribute that is not valid.
    """
    if ":specialuse" not in call.tags:
        return mailbox, None
    (attr,) = _checked(ctx, call, [ctx.string(call.tag(":specialuse"))])
    found = host_call(ctx.host, "special_use_mailbox", attr)
    return (found or mailbox), attr


def _validate(call: Call, compiler: Any) -> Call:
    _check_constants(compiler, "specialuse_exists", call.args[1])
    return call


def _run(ctx: Any, call: Call) -> bool:
    from mda.sieve.extensions.fileinto import mailbox_problem

    attrs = _checked(ctx, call, ctx.strings(call.args[1]))
    mailbox = None if call.args[0] is None else ctx.string(call.args[0])
    if mailbox is not None:
        problem = mailbox_problem(mailbox)
        if problem:
            ctx.warn(f"specialuse_exists: {problem}; the test is false", call)
            return False
    return bool(host_call(ctx.host, "special_use_exists", mailbox, tuple(attrs)))


EXTENSION = Extension(
    name="special-use",
    commands=(CommandSpec("specialuse_exists", "test", ("string", "stringlist"),
                          optional_leading=1, extension="special-use", validate=_validate,
                          run=_run),),
    tags=(TagSpec(":specialuse", arg="string", commands=("fileinto",),
                  extension="special-use", check=_check_tag),),
)
