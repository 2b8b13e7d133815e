"""ihave — RFC 5463 (§4 the ihave test, §5 the error command).

`ihave <capabilities>` is true when every capability is supported; the block of an
`if ihave` may then use them without `require` (§4). "variables" is never reported as
available, because variables change how strings are parsed (§4: "ihave "variables"" is
always false). `error <message>` ends the script with a run-time error (§5): implicit
keep. Complete.
"""

from __future__ import annotations

from typing import Any

from mda.sieve.errors import SieveRuntimeError
from mda.sieve.registry import REGISTRY
from mda.sieve.spec import Call, CommandSpec, Extension

NEVER = frozenset({"variables"})


def _validate(call: Call, compiler: Any) -> Call:
    names = [str(n) for n in call.args[0]]
    ok = all(n in REGISTRY.capabilities and n not in NEVER for n in names)
    return compiler.replace(call, data={"available": tuple(names) if ok else (),
                                        "result": ok})


def _run_ihave(ctx: Any, call: Call) -> bool:
    return bool(call.data.get("result"))


def _run_error(ctx: Any, call: Call) -> None:
    raise SieveRuntimeError(f"error: {ctx.string(call.args[0])}", call.line)


EXTENSION = Extension(
    name="ihave",
    commands=(
        CommandSpec("ihave", "test", ("stringlist",), extension="ihave", validate=_validate,
                    run=_run_ihave),
        CommandSpec("error", "command", ("string",), extension="ihave", run=_run_error),
    ),
)
