"""Several scripts run in sequence on one message: Pigeonhole's sieve_before/sieve_after.

The delivery layer runs the administrator's `sieve_scripts/before.d/*.sieve` (in name
order), then the user's active script (or `sieve_scripts/default.sieve` when the user has
none), then `sieve_scripts/after.d/*.sieve`. `evaluate_sequence` gives one `Result` for
the whole sequence, with the rules Pigeonhole follows (checked against its sieve-test):

- The next script runs only while the keep is in effect at the end of a script: the
  implicit keep was not cancelled, or the script executed an explicit `keep`. A
  `fileinto`/`redirect`/`discard`/`reject` that cancels the implicit keep ends the
  sequence.
- `stop` (and `return`) end only the script that executes them.
- The actions of a finished script are committed: a later script's action never
  conflicts with them (a `reject` after an earlier `keep` is allowed), limits count per
  script, a duplicate still merges (one store per mailbox, RFC 5228 §2.10.3), and a second
  vacation is dropped.
- The implicit keep of a script that is followed by another is deferred: only the last
  script that runs contributes its implicit keep.
- The imap4flags internal variable (RFC 5232 §3) and the message as edited by
  editheader carry over to the next script; variables do not.
- A run-time error ends the sequence: that script's actions are dropped, the earlier
  scripts' actions stay, and the implicit keep applies (RFC 5228 §2.10.6).

Deviation, as for a single script (RFC 3894 §3): a plain `fileinto "A"` after an earlier
script's `fileinto :copy "A"` cancels the implicit keep; Pigeonhole treats it as a
duplicate of the `:copy` action and keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from mda.sieve.actions import Action, Keep
from mda.sieve.compiler import Program
from mda.sieve.interpreter import Envelope, Environment, Result, evaluate
from mda.sieve.limits import DEFAULT_LIMITS, Limits
from mda.sieve.message import Message
from mda.sieve.rules import ActionList
from mda.sieve.spec import Call, CommandSpec

#: Result fields evaluate_sequence combines itself; every other (tuple) field is joined
_OWN_FIELDS = frozenset({"actions", "implicit_keep", "errors", "warnings", "message"})


@dataclass
class _Probe:
    """Seeds the internal flags variable and keeps the Context to read it back."""

    flags: dict[str, str]
    ctx: Any = None

    def run(self, ctx: Any, call: Call) -> None:
        ctx.flags = dict(self.flags)
        self.ctx = ctx


def _with_probe(program: Program, probe: _Probe) -> Program:
    """The program with a first command that runs `probe` (it counts as one step)."""
    spec = CommandSpec("mda-sequence-probe", "command", run=probe.run)
    return Program((Call(spec, 0, 0), *program.commands), program.required, program.sha256,
                   program.warnings)


def _explicit_keep(result: Result) -> bool:
    return any(isinstance(a, Keep) and not a.implicit for a in result.actions)


def evaluate_sequence(programs: Sequence[Program], message: Message, envelope: Envelope,
                      environment: Environment | None = None, host: Any = None, *,
                      limits: Limits | None = None) -> Result:
    """Run scripts one after the other on one message, with Pigeonhole's multiscript rules.

    Args:
        programs: the compiled scripts in execution order (before.d, the user's or the
            default script, after.d).
        message, envelope, environment, host, limits: as for `evaluate`.

    Returns:
        One Result for the sequence (see the module docstring): the committed actions of
        the scripts that ran plus the last one's implicit keep; `errors` holds the
        run-time error that ended the sequence, if any. Never raises for script errors.
    """
    limits = limits or DEFAULT_LIMITS
    combined = ActionList(limits.max_actions, limits.max_redirects)
    flags: dict[str, str] = {}
    current = message
    warnings: list[str] = []
    extras: dict[str, list[Any]] = {}
    errors: tuple[str, ...] = ()
    implicit_keep = True
    last_keep: Action | None = None
    for program in programs:
        probe = _Probe(flags)
        result = evaluate(_with_probe(program, probe), current, envelope, environment, host,
                          limits=limits)
        warnings.extend(result.warnings)
        implicit_keep = result.implicit_keep
        last_keep = next((a for a in result.actions if isinstance(a, Keep) and a.implicit),
                         None)
        if result.errors:
            errors = result.errors
            break
        if probe.ctx is not None:
            flags = dict(probe.ctx.flags)
        for action in result.actions:
            if action is not last_keep:
                combined.add_committed(action)
        for item in fields(result):
            value = getattr(result, item.name)
            if item.name not in _OWN_FIELDS and isinstance(value, tuple):
                extras.setdefault(item.name, []).extend(value)
        if result.message is not None:
            current = result.message
        if not (result.implicit_keep or _explicit_keep(result)):
            break
    if last_keep is not None:
        combined.add_committed(last_keep)
    combined.implicit_keep = False  # the last script's implicit keep was added above
    edited = current if current is not message else None
    return Result(combined.finish(frozenset()), implicit_keep, errors, tuple(warnings),
                  edited, **{name: tuple(values) for name, values in extras.items()})


__all__ = ["evaluate_sequence"]
