"""include — RFC 6609 (§3.2 `include [:personal | :global] [:once] [:optional] <name>`,
§3.3 `return`, §3.4 `global`, §3.5 the `global.` variable namespace).

- The included script's source comes from the host, `Host.include_script(name, scope)`
  with scope "personal" (the default) or "global" (the administrator's scripts, in
  `sieve_scripts/global/`); it is compiled (cached by hash) with the same limits, needs its
  own `require`s, and runs at the point of the include, adding to the same action list and
  the same imap4flags internal variable (as Pigeonhole does).
- Each script has its own variables and match variables; a name declared with `global`
  (which needs "variables") is shared by every script of the run that declares it, and
  `${global.NAME}` / `set "global.NAME"` reach the same variable without a declaration.
- `return` ends the current included script and continues after its include; in the
  main script it ends the script like `stop` (§3.3). `stop` ends everything.
- `:once` skips a script that was already included (or is being run) in this evaluation;
  including a script that is already running, without `:once`, is circular: a run-time
  error, and so is a missing script without `:optional`, a script that does not compile,
  more than `Limits.include_depth` nested includes or `Limits.max_includes` includes.
- The script name must be a constant (§3.2) and a valid script name: not empty, no `/`,
  no control characters (RFC 5804 §1.6).

Deviations (RFC 6609 §3.2 allows both): compilation is sans-IO, so a missing or
circular include is found at run time (implicit keep) rather than when the script is
compiled, as Pigeonhole does. `global` takes effect when executed, not lexically: a
script that uses a name locally and declares it global later (a compile error in
Pigeonhole) switches to the global variable from the declaration on.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from mda.sieve.compiler import compile_cached
from mda.sieve.errors import SieveCompileError, SieveRuntimeError
from mda.sieve.extensions.variables import check_name
from mda.sieve.interpreter import host_call
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec
from mda.sieve.strings import Template

#: ctx.state key of the IncludeState of a run
STATE = "include"


class _Return(Exception):
    """`return` (RFC 6609 §3.3): leave the current included script."""


class ScopedVariables(MutableMapping[str, str]):
    """One script's variables: names declared `global` live in the shared table.

    Args:
        shared: the run's global variables (`ctx.state["globals"]`).
        local: this script's own variables.
    """

    def __init__(self, shared: dict[str, str], local: dict[str, str] | None = None) -> None:
        self.shared = shared
        self.local: dict[str, str] = local if local is not None else {}
        self.declared: set[str] = set()

    def _table(self, key: str) -> dict[str, str]:
        return self.shared if key in self.declared else self.local

    def __getitem__(self, key: str) -> str:
        return self._table(key)[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._table(key)[key] = value

    def __delitem__(self, key: str) -> None:
        del self._table(key)[key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._table(key)

    def __iter__(self) -> Iterator[str]:
        yield from self.local
        yield from (k for k in self.shared if k in self.declared and k not in self.local)

    def __len__(self) -> int:
        return len(self.local)


@dataclass
class IncludeState:
    """Bookkeeping of the includes of one run.

    Attributes:
        running: (scope, name) of the included scripts being run, outermost first.
        included: every (scope, name) included so far (for `:once`).
        count: how many includes ran.
    """

    running: list[tuple[str, str]] = field(default_factory=list)
    included: set[tuple[str, str]] = field(default_factory=set)
    count: int = 0


def script_name_problem(name: str) -> str | None:
    """Why `name` cannot name a script (RFC 5804 §1.6), or None."""
    if name == "":
        return "empty script name"
    if "/" in name:
        return f"invalid script name \"{name}\": '/' is not allowed"
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029" for ch in name):
        return f"invalid script name \"{name}\": control character"
    return None


def _validate_include(call: Call, compiler: Any) -> Call:
    name = call.args[0]
    if isinstance(name, Template):
        compiler.error("bad-value", "the name of an included script must be a constant "
                       "string (RFC 6609 §3.2)")
    problem = script_name_problem(name)
    if problem:
        compiler.error("bad-value", f"include: {problem} (RFC 6609 §3.2)")
    return call


def scoped_variables(ctx: Any) -> ScopedVariables:
    """The current script's variables as a ScopedVariables (converted on first use)."""
    if not isinstance(ctx.variables, ScopedVariables):
        ctx.variables = ScopedVariables(ctx.state.setdefault("globals", {}), ctx.variables)
    return ctx.variables


def _run_include(ctx: Any, call: Call) -> None:
    name = call.args[0]
    scope = "global" if call.tag(":global") else "personal"
    key = (scope, name)
    state: IncludeState = ctx.state.setdefault(STATE, IncludeState())
    main = ("personal", ctx.environment.script_name)
    if call.tag(":once") and (key in state.included or key == main):
        return
    if key in state.running or key == main:
        raise SieveRuntimeError(f"include: circular include of {scope} script \"{name}\" "
                                "(RFC 6609 §3.2)", call.line)
    if len(state.running) >= ctx.limits.include_depth:
        raise SieveRuntimeError(f"include: scripts nested deeper than "
                                f"{ctx.limits.include_depth}", call.line)
    if state.count >= ctx.limits.max_includes:
        raise SieveRuntimeError(f"include: more than {ctx.limits.max_includes} includes",
                                call.line)
    source = host_call(ctx.host, "include_script", name, scope)
    if source is None:
        if call.tag(":optional"):
            return
        raise SieveRuntimeError(f"include: {scope} script \"{name}\" does not exist "
                                "(RFC 6609 §3.2)", call.line)
    try:
        program = compile_cached(source, limits=ctx.limits)
    except SieveCompileError as exc:
        raise SieveRuntimeError(f"include: {scope} script \"{name}\" does not compile: {exc}",
                                call.line) from None
    state.count += 1
    state.included.add(key)
    state.running.append(key)
    saved = (ctx.program, ctx.variables, ctx.match_values, ctx.variables_on)
    ctx.program = program
    ctx.variables = ScopedVariables(ctx.state.setdefault("globals", {}))
    ctx.match_values = []
    ctx.variables_on = program.uses("variables")
    try:
        ctx.run_block(program.commands)
    except _Return:
        pass
    finally:
        ctx.program, ctx.variables, ctx.match_values, ctx.variables_on = saved
        state.running.pop()


def _run_return(ctx: Any, call: Call) -> None:
    state: IncludeState | None = ctx.state.get(STATE)
    if state is None or not state.running:
        ctx.stop()  # RFC 6609 §3.3: in the main script, return acts like stop
    raise _Return()


def _validate_global(call: Call, compiler: Any) -> Call:
    compiler.need("variables", "'global'")
    for name in call.args[0]:
        if isinstance(name, Template) or "." in name:
            compiler.error("bad-value", f"global: invalid variable name \"{name}\" "
                           "(RFC 6609 §3.4)")
        check_name(compiler, name)
    return call


def _run_global(ctx: Any, call: Call) -> None:
    scoped_variables(ctx).declared.update(n.lower() for n in call.args[0])


EXTENSION = Extension(
    name="include",
    commands=(
        CommandSpec("include", "command", ("string",), groups=("include-location",),
                    extension="include", validate=_validate_include, run=_run_include),
        CommandSpec("return", "command", extension="include", run=_run_return),
        CommandSpec("global", "command", ("stringlist",), extension="include",
                    validate=_validate_global, run=_run_global),
    ),
    tags=(
        TagSpec(":personal", group="include-location", commands=("include",)),
        TagSpec(":global", group="include-location", commands=("include",)),
        TagSpec(":once", commands=("include",)),
        TagSpec(":optional", commands=("include",)),
    ),
)
