"""index — RFC 5260 §6 (`:index N` and `:last` on header, address and date).

`:index N` selects the N-th occurrence of each named field (from the end with `:last`);
it counts fields, not the addresses inside them. `:index 0` and `:last` without
`:index` are compile errors (§6). Complete.
"""

from __future__ import annotations

from typing import Any

from mda.sieve.spec import Call, Extension, TagSpec

COMMANDS = ("header", "address", "date")


def validate_index(call: Call, compiler: Any) -> None:
    """RFC 5260 §6 compile-time rules; called by the commands that accept :index."""
    if call.tag(":last") and call.tag(":index") is None:
        compiler.error("bad-argument", ":last needs :index (RFC 5260 §6)")
    if call.tag(":index") == 0:
        compiler.error("bad-value", ":index must be 1 or more (RFC 5260 §6)")


EXTENSION = Extension(
    name="index",
    tags=(
        TagSpec(":index", arg="number", commands=COMMANDS, extension="index",
                check=validate_index),
        TagSpec(":last", commands=COMMANDS, extension="index", check=validate_index),
    ),
)
