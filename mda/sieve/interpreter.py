"""Evaluate a compiled Program against one message (RFC 5228 §2.10), sans I/O.

`evaluate` is synchronous and pure: no sockets, no database, no clock it was not handed
(`Environment.now`). Facts from outside come through the `Host` the caller passes
(`mailbox_exists`, ...). The result is the final, conflict-checked action list: a
run-time error (RFC 5228 §2.10.6) drops every action of the script and leaves only the
implicit keep, with the reason in `Result.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from mda.sieve.actions import Action, DuplicateMark, FileInto, Keep, Redirect
from mda.sieve.compiler import Program
from mda.sieve.errors import SieveRuntimeError
from mda.sieve.limits import DEFAULT_LIMITS, Limits
from mda.sieve.message import Message
from mda.sieve.rules import ActionList
from mda.sieve.spec import Call
from mda.sieve.strings import Template, VarRef


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP/LMTP envelope of the copy being filtered (RFC 5228 §5.4).

    Attributes:
        mail_from: the envelope sender, "" for the null reverse-path `<>`.
        rcpt_to: the envelope recipient as given in RCPT TO (may carry a subaddress).
        orig_to: the original recipient (ORCPT, RFC 3461), or None.
    """

    mail_from: str
    rcpt_to: str
    orig_to: str | None = None


@dataclass(frozen=True, slots=True)
class Environment:
    """Everything about the run that is not the message, the envelope or the host.

    Attributes:
        now: the current time (aware) for currentdate and vacation; None = not known.
        timezone: the local time zone name for the date extension (IANA name).
        domain, host: the server's mail domain and host name (RFC 5183 items).
        location: RFC 5183 "location" ("MS": delivery to a mail store).
        phase: RFC 5183 "phase" ("during", "post").
        name, version: the implementation (RFC 5183 "name", "version").
        remote_host, remote_ip: the SMTP client (RFC 5183), if known.
        recipient_delimiter: subaddress separator characters (RFC 5233).
        vacation_min_seconds, vacation_default_seconds, vacation_max_seconds: bounds for
            :days/:seconds (RFC 5230 §4.1, RFC 6131 §2); max 0 = no upper bound.
        user_addresses: addresses that belong to the user besides the recipient.
        spamtest_header, spamtest_max: RFC 5235 spamtest configuration
            (`MDA_SPAMTEST_HEADER` "Header-Name: regex" whose group 1 is the score, and
            the score meaning certainly spam); "" = not configured, spamtest sees "0".
        virustest_header, virustest_text_values: RFC 5235 virustest configuration
            (`MDA_VIRUSTEST_HEADER`, and (N, status text) pairs, N from 0 to 5, from
            `MDA_VIRUSTEST_TEXT_VALUES`); empty = not configured, virustest sees "0".
        duplicate_default_seconds, duplicate_max_seconds: RFC 7352 §3.3 period of a
            duplicate record without :seconds, and the largest :seconds honoured.
        editheader_forbid_add, editheader_forbid_delete: header names (any case) that
            addheader / deleteheader may not touch, besides those RFC 5293 §6 and
            Pigeonhole always protect; editheader_max_header_size: the largest addheader
            value in bytes.
        script_name: the name of the active script (for warnings).
    """

    now: datetime | None = None
    timezone: str = "UTC"
    domain: str = "localhost"
    host: str = "localhost"
    location: str = "MS"
    phase: str = "post"
    name: str = "mda"
    version: str = "0.1.0"
    remote_host: str = ""
    remote_ip: str = ""
    recipient_delimiter: str = "+"
    vacation_min_seconds: int = 86400
    vacation_default_seconds: int = 7 * 86400
    vacation_max_seconds: int = 0
    user_addresses: tuple[str, ...] = ()
    spamtest_header: str = ""
    spamtest_max: float = 10.0
    virustest_header: str = ""
    virustest_text_values: tuple[tuple[int, str], ...] = ()
    duplicate_default_seconds: int = 12 * 3600
    duplicate_max_seconds: int = 2 * 86400
    editheader_forbid_add: tuple[str, ...] = ()
    editheader_forbid_delete: tuple[str, ...] = ()
    editheader_max_header_size: int = 2048
    script_name: str = ""


@runtime_checkable
class Host(Protocol):
    """What the engine asks the caller during evaluation; every method is synchronous.

    The delivery layer pre-fetches what it needs (e.g. the user's mailbox names) so the
    answers cost no I/O. Methods added later come with defaults here; call them through
    `host_call`, which falls back to the default for hosts that do not define them.
    """

    def mailbox_exists(self, name: str) -> bool:
        """RFC 5490 §3.1: does the user's mailbox `name` exist?"""
        ...

    def duplicate_seen(self, key: str, period: int) -> bool:
        """RFC 7352 §3: is an unexpired duplicate record with this key stored for the user?

        Args:
            key: `DuplicateMark.id_hash` of an earlier delivery.
            period: the test's period in seconds, for hosts that store the time a key was
                seen rather than its expiry.
        """
        return False

    def include_script(self, name: str, location: str) -> str | None:
        """RFC 6609: the source of a personal or global script, or None if missing."""
        return None

    def special_use_exists(self, mailbox: str | None, uses: tuple[str, ...]) -> bool:
        """RFC 8579 §3: does `mailbox` (None: some mailbox of the user) carry every one of
        these special-use attributes (e.g. "\\Junk"; compared case-insensitively)?
        A mailbox that does not exist carries none."""
        return False

    def special_use_mailbox(self, use: str) -> str | None:
        """RFC 8579 §4: the name of the user's mailbox with this special-use attribute
        (fileinto :specialuse), or None when there is none or the host cannot tell."""
        return None


_HOST_DEFAULTS = {
    "duplicate_seen": False,
    "include_script": None,
    "special_use_exists": False,
    "special_use_mailbox": None,
}


def host_call(host: Any, method: str, *args: Any) -> Any:
    """Call an optional Host method, using the Protocol's default when it is missing."""
    fn = getattr(host, method, None)
    if fn is None:
        return _HOST_DEFAULTS.get(method)
    return fn(*args)


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of evaluating a script for one recipient.

    Attributes:
        actions: the final action list in execution order, duplicates merged, including
            `Keep(implicit=True, flags=...)` when the implicit keep is in force.
        implicit_keep: whether the implicit keep is in force.
        errors: run-time errors; when non-empty, actions == (Keep(implicit=True),).
        warnings: non-fatal problems (e.g. an invalid :zone).
        message: the message as edited by the script (editheader), or None if unchanged.
            Each keep/fileinto/redirect carries the version current when it was executed
            (`Keep.message` ...); the implicit keep carries this final one.
        duplicate_ids: duplicate-tracking records (RFC 7352) to write for the user only
            once this recipient's delivery has committed; see `DuplicateMark`. Empty
            when there were errors.
    """

    actions: tuple[Action, ...]
    implicit_keep: bool
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    message: Message | None = None
    duplicate_ids: tuple[DuplicateMark, ...] = ()


class _Stop(Exception):
    """`stop` (RFC 5228 §3.3): end the script, keep what was done."""


class Context:
    """The state of one evaluation, handed to every command's `run`.

    Attributes:
        message: the message (replaced when editheader changes it).
        envelope, environment, host, limits: as passed to `evaluate`.
        actions: the action list so far.
        variables: RFC 5229 variables (lower-cased names).
        match_values: RFC 5229 §3.2 match variables, ${0} first.
        flags: the imap4flags internal variable (RFC 5232 §3), insertion-ordered.
        warnings: warnings collected during the run.
        state: per-extension scratch space.
    """

    def __init__(self, program: Program, message: Message, envelope: Envelope,
                 environment: Environment, host: Any, limits: Limits) -> None:
        self.program = program
        self.message = message
        self.original = message
        self.envelope = envelope
        self.environment = environment
        self.host = host
        self.limits = limits
        self.actions = ActionList(limits.max_actions, limits.max_redirects)
        self.variables: dict[str, str] = {}
        self.match_values: list[str] = []
        self.flags: dict[str, str] = {}
        self.warnings: list[str] = []
        self.state: dict[str, Any] = {}
        self.steps = 0
        self.variables_on = program.uses("variables")

    # -- strings ------------------------------------------------------------------------

    def string(self, value: Any) -> str:
        """Expand a compiled string value (RFC 5229 §3 when variables are in use)."""
        if isinstance(value, Template):
            out = []
            for part in value.parts:
                out.append(self.lookup(part) if isinstance(part, VarRef) else part)
            return "".join(out)
        return value

    def strings(self, values: Iterable[Any]) -> list[str]:
        """Expand a compiled string list."""
        return [v if v.__class__ is str else self.string(v) for v in values]

    def lookup(self, ref: VarRef) -> str:
        """The value of a variable reference; unknown variables are empty (RFC 5229 §3)."""
        if ref.is_match:
            index = int(ref.name)
            return self.match_values[index] if index < len(self.match_values) else ""
        if ref.namespace == "global":
            return self.state.setdefault("globals", {}).get(ref.name, "")
        return self.variables.get(ref.name, "")

    def set_match_values(self, values: list[str] | None) -> None:
        """Replace the match variables after a successful :matches/:regex (RFC 5229 §3.2)."""
        if values is not None and self.variables_on:
            self.match_values = values[: self.limits.max_match_values]

    # -- execution ----------------------------------------------------------------------

    def tick(self, call: Call) -> None:
        """Count one step; too many is a run-time error (Limits.max_steps)."""
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise SieveRuntimeError(f"script ran more than {self.limits.max_steps} steps",
                                    call.line)

    def run_block(self, block: Iterable[Call]) -> None:
        """Run commands in order."""
        for call in block:
            self.tick(call)
            call.spec.run(self, call)  # type: ignore[misc]

    def test(self, call: Call) -> bool:
        """Evaluate a test."""
        self.tick(call)
        return bool(call.spec.run(self, call))  # type: ignore[misc]

    def stop(self) -> None:
        """End the script now (RFC 5228 §3.3)."""
        raise _Stop()

    def add(self, action: Action, call: Call) -> None:
        """Execute an action through the rules table.

        A store or redirect after editheader changed the message carries the message as it
        is now (RFC 5293 §4: later actions see the change; earlier ones do not).
        """
        if self.message is not self.original and isinstance(action, (Keep, FileInto,
                                                                      Redirect)):
            action = replace(action, message=self.message)
        self.actions.add(action, call.line)

    def warn(self, message: str, call: Call | None = None) -> None:
        """Record a warning."""
        self.warnings.append(f"line {call.line}: {message}" if call else message)


def evaluate(program: Program, message: Message, envelope: Envelope,
             environment: Environment | None = None, host: Any = None, *,
             limits: Limits | None = None) -> Result:
    """Run a script against a message for one recipient (RFC 5228 §2.10).

    Args:
        program: from `compile_script`/`compile_cached`.
        message: from `parse_message`.
        envelope: the envelope of this recipient's copy.
        environment: run facts; default `Environment()`.
        host: answers the engine's questions (see `Host`); None = no mailbox exists
            except INBOX.
        limits: run-time limits; default `Limits()`.

    Returns:
        The Result. Never raises for errors in the script: a run-time error gives
        `actions == (Keep(implicit=True),)` and the reason in `errors`.
    """
    ctx = Context(program, message, envelope, environment or Environment(),
                  host if host is not None else _NoHost(), limits or DEFAULT_LIMITS)
    try:
        ctx.run_block(program.commands)
    except _Stop:
        pass
    except SieveRuntimeError as exc:
        return Result((Keep(implicit=True),), True, (exc.message,), tuple(ctx.warnings))
    try:
        actions = ctx.actions.finish(frozenset(ctx.flags.values()))
    except SieveRuntimeError as exc:  # pragma: no cover - finish only merges
        return Result((Keep(implicit=True),), True, (exc.message,), tuple(ctx.warnings))
    edited = ctx.message if ctx.message is not ctx.original else None
    if edited is not None:
        actions = tuple(replace(a, message=edited)
                        if isinstance(a, Keep) and a.implicit and a.message is None else a
                        for a in actions)
    return Result(actions, ctx.actions.implicit_keep, (), tuple(ctx.warnings), edited,
                  tuple(ctx.state.get("duplicate_marks", ())))


class _NoHost:
    """Host used when none is given: only INBOX exists."""

    def mailbox_exists(self, name: str) -> bool:
        return name.upper() == "INBOX"


__all__ = ["Envelope", "Environment", "Host", "Result", "Context", "evaluate", "host_call",
           "field"]
