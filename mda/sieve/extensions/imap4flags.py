"""imap4flags — RFC 5232 (§3 actions setflag/addflag/removeflag, §4 test hasflag,
§5 the `:flags` tagged argument on keep and fileinto).

The internal variable holds the flags that keep, fileinto and the implicit keep set
when no `:flags` is given (§3). Flags compare case-insensitively (§2, IMAP flags are
case-insensitive, RFC 3501 §2.3.2); a string holding several space-separated flags is
split (§3). The five system flags a script may set (RFC 3501 §2.3.2: `\\Seen \\Answered
\\Flagged \\Deleted \\Draft`) are stored in that canonical spelling however the script
wrote them; a keyword keeps the spelling first seen. A flag that is not a valid IMAP flag
(`\\Recent` or another backslash flag, or one with atom-specials) is ignored, as Pigeonhole
does, with a warning in `Result.warnings` naming it. With the
variables extension, the optional first argument names a variable used instead of the
internal one. Complete.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from mda.sieve.common import match, validate_match
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec
from mda.sieve.strings import Template

#: lower-cased system flag -> its canonical spelling (RFC 3501 §2.3.2; \Recent cannot be set)
CANONICAL_FLAGS = {flag.lower(): flag for flag in
                   ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
SYSTEM_FLAGS = frozenset(CANONICAL_FLAGS)
_ATOM = re.compile(r"[^\x00-\x20\x7f(){%*\"\\\]]+")


def valid_flag(flag: str) -> bool:
    """RFC 3501 §9 flag: a system flag or an atom (keyword)."""
    if flag.startswith("\\"):
        return flag.lower() in SYSTEM_FLAGS
    return _ATOM.fullmatch(flag) is not None


def flag_set(strings: Iterable[str],
             invalid: Callable[[str], None] | None = None) -> dict[str, str]:
    """Split, validate and de-duplicate flags (RFC 5232 §3).

    Args:
        strings: flag strings, each holding one or more space-separated flags.
        invalid: called with each invalid flag, which is then left out.

    Returns:
        Lower-cased flag -> the spelling to store: the canonical one for a system flag,
        else the first spelling seen; in first-seen order.
    """
    out: dict[str, str] = {}
    for text in strings:
        for flag in text.split():
            if valid_flag(flag):
                key = flag.lower()
                out.setdefault(key, CANONICAL_FLAGS.get(key, flag))
            elif invalid is not None:
                invalid(flag)
    return out


def flag_argument(ctx: Any, call: Call, values: Iterable[Any]) -> dict[str, str]:
    """`flag_set` of a command's flag-list argument, warning about each invalid flag.

    Args:
        ctx: the evaluation context (its `warn` records the warning).
        call: the command, for the line number in the warning.
        values: the compiled string list.

    Returns:
        As `flag_set`.
    """
    def warn(flag: str) -> None:
        ctx.warn(f"ignored invalid IMAP flag \"{flag}\" (RFC 5232 §3: neither a keyword "
                 f"nor a system flag a script may set)", call)

    return flag_set(ctx.strings(values), warn)


def _get(ctx: Any, variable: str | None) -> dict[str, str]:
    if variable is None:
        return dict(ctx.flags)
    return flag_set([ctx.variables.get(variable.lower(), "")])


def _put(ctx: Any, variable: str | None, flags: dict[str, str]) -> None:
    if variable is None:
        ctx.flags = flags
    else:
        from mda.sieve.extensions.variables import assign

        assign(ctx, variable, " ".join(flags.values()))


def _variable(ctx: Any, call: Call) -> str | None:
    return None if call.args[0] is None else ctx.string(call.args[0])


def _run_setflag(ctx: Any, call: Call) -> None:
    _put(ctx, _variable(ctx, call), flag_argument(ctx, call, call.args[1]))


def _run_addflag(ctx: Any, call: Call) -> None:
    variable = _variable(ctx, call)
    flags = _get(ctx, variable)
    for key, flag in flag_argument(ctx, call, call.args[1]).items():
        flags.setdefault(key, flag)
    _put(ctx, variable, flags)


def _run_removeflag(ctx: Any, call: Call) -> None:
    variable = _variable(ctx, call)
    flags = _get(ctx, variable)
    for key in flag_argument(ctx, call, call.args[1]):
        flags.pop(key, None)
    _put(ctx, variable, flags)


def _validate_variable(call: Call, compiler: Any) -> Call:
    if call.args[0] is not None:
        compiler.need("variables", "a variable name argument")
        names = call.args[0] if isinstance(call.args[0], tuple) else (call.args[0],)
        from mda.sieve.extensions.variables import check_name

        for name in names:
            if not isinstance(name, Template):
                check_name(compiler, name)
    return call


def _validate_hasflag(call: Call, compiler: Any) -> Call:
    return validate_match(_validate_variable(call, compiler), compiler)


def _run_hasflag(ctx: Any, call: Call) -> bool:
    if call.args[0] is None:
        values = list(ctx.flags.values())
    else:
        values = []
        for name in ctx.strings(call.args[0]):
            values.extend(_get(ctx, name).values())
    return match(ctx, call, values, ctx.strings(call.args[1]))


EXTENSION = Extension(
    name="imap4flags",
    commands=(
        CommandSpec("setflag", "command", ("string", "stringlist"), optional_leading=1,
                    extension="imap4flags", validate=_validate_variable, run=_run_setflag),
        CommandSpec("addflag", "command", ("string", "stringlist"), optional_leading=1,
                    extension="imap4flags", validate=_validate_variable, run=_run_addflag),
        CommandSpec("removeflag", "command", ("string", "stringlist"), optional_leading=1,
                    extension="imap4flags", validate=_validate_variable,
                    run=_run_removeflag),
        CommandSpec("hasflag", "test", ("stringlist", "stringlist"), optional_leading=1,
                    groups=("comparator", "match-type"), extension="imap4flags",
                    validate=_validate_hasflag, run=_run_hasflag),
    ),
    tags=(TagSpec(":flags", arg="stringlist", commands=("keep", "fileinto"),
                  extension="imap4flags"),),
)
