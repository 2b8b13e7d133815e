"""foreverypart — RFC 5703 §3 (the `foreverypart [:name <string>] <block>` loop and
`break [:name <string>]`).

- The loop visits the top-level message first, then every part below it depth first,
  parents before children (a message/rfc822 part is followed by the message it encloses);
  a message that is not multipart is visited once (§3). A loop nested in another one
  visits the parts *below* the outer loop's current part.
- `break` ends the innermost loop, `break :name N` the enclosing loop named N (§3.2).
  `break` outside a loop, or naming no enclosing loop, is a compile error, and so is
  nesting loops deeper than `MAX_LOOP_DEPTH` (Pigeonhole's limit).
- Each visit counts as one step against `Limits.max_steps`.

Deviation: none known. (Pigeonhole 0.5.19 fails at run time on a loop nested inside an
`if` inside another loop; mda runs it.)
"""

from __future__ import annotations

from typing import Any

from mda.sieve.extensions.mime import PART_STACK, current_part, descendants
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec

#: how deeply foreverypart loops may nest (Pigeonhole's SIEVE_MAX_LOOP_DEPTH)
MAX_LOOP_DEPTH = 4


class _Break(Exception):
    """`break` (RFC 5703 §3.2): leave the loop named `name` (None = innermost)."""

    def __init__(self, name: str | None) -> None:
        super().__init__(name)
        self.name = name


def loops_around(compiler: Any) -> list[dict[str, Any]]:
    """The tags of the foreverypart loops enclosing the command being compiled."""
    return [tags for name, tags in compiler.enclosing if name == "foreverypart"]


def _validate_loop(call: Call, compiler: Any) -> Call:
    if len(loops_around(compiler)) >= MAX_LOOP_DEPTH:
        compiler.error("limit", f"foreverypart loops nested deeper than {MAX_LOOP_DEPTH} "
                       "(RFC 5703 §3)")
    if ":name" in call.tags and not isinstance(call.tag(":name"), str):
        compiler.error("bad-value", "the :name of foreverypart must be a constant string")
    return call


def _validate_break(call: Call, compiler: Any) -> Call:
    loops = loops_around(compiler)
    if not loops:
        compiler.error("syntax", "break outside a foreverypart loop (RFC 5703 §3.2)")
    name = call.tag(":name")
    if name is not None:
        if not isinstance(name, str):
            compiler.error("bad-value", "the :name of break must be a constant string")
        if all(tags.get(":name") != name for tags in loops):
            compiler.error("bad-value", f"break :name \"{name}\": no enclosing foreverypart "
                           "has that name (RFC 5703 §3.2)")
    return call


def _run_loop(ctx: Any, call: Call) -> None:
    stack = ctx.state.setdefault(PART_STACK, [])
    parts = list(descendants(current_part(ctx))) if stack else [ctx.message.mime,
                                                                 *descendants(ctx.message.mime)]
    name = call.tag(":name")
    try:
        for part in parts:
            ctx.tick(call)
            stack.append(part)
            try:
                ctx.run_block(call.block)
            finally:
                stack.pop()
    except _Break as exc:
        if exc.name is not None and exc.name != name:
            raise


def _run_break(ctx: Any, call: Call) -> None:
    raise _Break(call.tag(":name"))


EXTENSION = Extension(
    name="foreverypart",
    commands=(
        CommandSpec("foreverypart", "block", extension="foreverypart",
                    validate=_validate_loop, run=_run_loop),
        CommandSpec("break", "command", extension="foreverypart", validate=_validate_break,
                    run=_run_break),
    ),
    tags=(
        TagSpec(":name", arg="string", commands=("foreverypart", "break"),
                extension="foreverypart"),
    ),
)
