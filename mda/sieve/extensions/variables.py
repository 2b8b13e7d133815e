"""variables — RFC 5229 (§3 variable references and match variables, §4 `set` with all
modifiers, §5 the `string` test).

String expansion itself is done by `Context.string` on the `Template`s the compiler
builds when "variables" is required: expansion happens once, never recursively (§3), an
unknown variable expands to the empty string, a reference that is not well-formed stays
literal text. Match variables `${0}`..`${N}` are set by a successful `:matches` (and
`:regex`) and kept otherwise (§3.2). Values longer than `Limits.max_variable_size`
characters are truncated (§3 allows it). Complete.
"""

from __future__ import annotations

import re
from typing import Any

from mda.sieve.common import match, validate_match
from mda.sieve.errors import SieveRuntimeError
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec
from mda.sieve.strings import Template

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(compiler: Any, name: str) -> None:
    """Compile-time check of a variable name (RFC 5229 §3 variable-name)."""
    namespace, _, ident = name.rpartition(".")
    if namespace:
        if namespace.lower() != "global" or not compiler.has("include"):
            compiler.error("bad-value", f"invalid variable name \"{name}\": unknown "
                           f"namespace \"{namespace}\" (RFC 5229 §3)")
    if not _IDENTIFIER.fullmatch(ident):
        compiler.error("bad-value", f"invalid variable name \"{name}\" (RFC 5229 §3)")


def assign(ctx: Any, name: str, value: str) -> None:
    """Set a variable, truncating to the configured size (RFC 5229 §3).

    Raises:
        SieveRuntimeError: too many variables.
    """
    namespace, _, ident = name.lower().rpartition(".")
    value = value[: ctx.limits.max_variable_size]
    table = ctx.state.setdefault("globals", {}) if namespace == "global" else ctx.variables
    if ident not in table and len(table) >= ctx.limits.max_variables:
        raise SieveRuntimeError(f"more than {ctx.limits.max_variables} variables")
    table[ident] = value


def _quote_wildcard(value: str) -> str:
    return re.sub(r"([*?\\])", r"\\\1", value)


def _quote_regex(value: str) -> str:
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", value)


def _encode_url(value: str) -> str:
    # RFC 5435 §6: percent-encode everything but RFC 3986 unreserved characters
    out = []
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if ch.isascii() and (ch.isalnum() or ch in "-._~"):
            out.append(ch)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def _first(value: str, upper: bool) -> str:
    if not value:
        return value
    return (value[0].upper() if upper else value[0].lower()) + value[1:]


#: modifiers by precedence, highest first (RFC 5229 §4.1, RFC 5230/5435 additions)
MODIFIERS = (
    (":lower", str.lower),
    (":upper", str.upper),
    (":lowerfirst", lambda v: _first(v, False)),
    (":upperfirst", lambda v: _first(v, True)),
    (":quotewildcard", _quote_wildcard),
    (":quoteregex", _quote_regex),
    (":encodeurl", _encode_url),
    (":length", lambda v: str(len(v))),
)


def check_target(compiler: Any, name: Any, command: str, rfc: str) -> None:
    """Compile-time check of the variable a command assigns: a constant, valid name.

    Args:
        name: the compiled argument (a Template when it references variables).
        command: the command, for the message.
        rfc: the section that requires a constant, e.g. "RFC 5229 §4".
    """
    if isinstance(name, Template):
        compiler.error("bad-value", f"the variable name of {command} must be a constant "
                       f"({rfc})")
    check_name(compiler, name)


def modify(call: Call, value: str) -> str:
    """Apply the call's modifier tags in precedence order (RFC 5229 §4.1)."""
    for tag, fn in MODIFIERS:
        if call.tag(tag):
            value = fn(value)
    return value


def _validate_set(call: Call, compiler: Any) -> Call:
    check_target(compiler, call.args[0], "set", "RFC 5229 §4")
    return call


def _run_set(ctx: Any, call: Call) -> None:
    assign(ctx, call.args[0], modify(call, ctx.string(call.args[1])))


def _run_string(ctx: Any, call: Call) -> bool:
    values = ctx.strings(call.args[0])
    if call.data.get("match_type") == ":count":
        values = [v for v in values if v != ""]  # RFC 5229 §5: empty strings not counted
    return match(ctx, call, values, ctx.strings(call.args[1]))


EXTENSION = Extension(
    name="variables",
    commands=(
        CommandSpec("set", "command", ("string", "string"),
                    extension="variables", validate=_validate_set, run=_run_set),
        CommandSpec("string", "test", ("stringlist", "stringlist"),
                    groups=("comparator", "match-type"), extension="variables",
                    validate=validate_match, run=_run_string),
    ),
    tags=(
        TagSpec(":lower", commands=("set",), group="case40"),
        TagSpec(":upper", commands=("set",), group="case40"),
        TagSpec(":lowerfirst", commands=("set",), group="case30"),
        TagSpec(":upperfirst", commands=("set",), group="case30"),
        TagSpec(":quotewildcard", commands=("set",), group="quote20"),
        TagSpec(":length", commands=("set",), group="length10"),
        TagSpec(":encodeurl", commands=("set",), group="quote15", extension="enotify"),
    ),
)
