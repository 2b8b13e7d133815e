"""envelope — RFC 5228 §5.4 (optional test of the base specification).

`envelope [COMPARATOR] [ADDRESS-PART] [MATCH-TYPE] <envelope-part> <key-list>` tests the
SMTP envelope: "from" (the envelope sender) and "to" (the envelope recipient of this copy).
Complete. The null reverse-path matches as the empty string whatever the address part
(§5.4: "...the null reverse-path... MUST match the empty string"). An unknown envelope
part given as a constant is a compile error; one computed at run time matches nothing.
"""

from __future__ import annotations

from typing import Any

from mda.sieve.addresses import parse_address
from mda.sieve.common import append_address_part, check_constants, match, validate_match
from mda.sieve.spec import Call, CommandSpec, Extension

PARTS = ("from", "to")


def _validate(call: Call, compiler: Any) -> Call:
    check_constants(compiler, call.args[0], PARTS,
                    "unknown envelope part \"{}\" (RFC 5228 §5.4: \"from\" or \"to\")")
    return validate_match(call, compiler)


def envelope_values(ctx: Any, call: Call, parts: list[str]) -> list[str]:
    """The selected address parts of the named envelope parts."""
    values: list[str] = []
    for part in parts:
        part = part.lower()
        if part == "from":
            raw = ctx.envelope.mail_from
        elif part == "to":
            raw = ctx.envelope.rcpt_to
        else:
            continue
        if raw in ("", "<>"):
            values.append("")
            continue
        addr = parse_address(raw)
        if addr is not None:
            append_address_part(values, ctx, call, addr)
    return values


def _run(ctx: Any, call: Call) -> bool:
    values = envelope_values(ctx, call, ctx.strings(call.args[0]))
    return match(ctx, call, values, ctx.strings(call.args[1]))


EXTENSION = Extension(
    name="envelope",
    commands=(
        CommandSpec("envelope", "test", ("stringlist", "stringlist"),
                    groups=("comparator", "match-type", "address-part"),
                    extension="envelope", validate=_validate, run=_run),
    ),
)
