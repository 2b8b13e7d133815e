"""Dry run of a script on a message, like Pigeonhole's `sieve-test` (the `mda sieve test`
command): nothing is stored or sent; the result is printed as JSON or as a listing.

JSON shape (issue 2, and the format of the conformance cases)::

    {"status": "ok" | "compile_error", "errors": [...], "actions": [...]}

Actions: `{"action": "store", "mailbox": M, "flags": [sorted, lower-cased]}` for keep,
fileinto and the implicit keep alike; `{"action": "redirect", "address": A}`;
`{"action": "reject", "reason": R}`; `{"action": "discard"}`; `{"action": "vacation",
"subject"?: S, "from"?: F, "seconds": N, "reason": R}`; `{"action": "notify", "method":
"mailto:a,b"}`; sorted by their JSON text (`json.dumps(..., sort_keys=True,
ensure_ascii=False)`). A fileinto is listed as a store even when the mailbox does not
exist. Mailbox names and reasons are printed in full (never truncated).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mda.sieve.actions import (Action, Discard, FileInto, Keep, Notify, Redirect, Reject,
                               Vacation)
from mda.sieve.addresses import parse_address_list
from mda.sieve.compiler import compile_script
from mda.sieve.errors import SieveCompileError
from mda.sieve.interpreter import Envelope, Environment, Result, evaluate
from mda.sieve.limits import Limits
from mda.sieve.message import parse_message
from mda.sieve.multiscript import evaluate_sequence


#: where a dry run finds included scripts: (name, "personal" | "global") -> source or None
ScriptSource = Callable[[str, str], "str | bytes | None"]


@dataclass(frozen=True, slots=True)
class MailboxList:
    """A Host for dry runs: the named mailboxes exist, and INBOX always.

    Attributes:
        names: the mailboxes that exist besides INBOX.
        scripts: where included scripts come from (RFC 6609); None = there are none.
    """

    names: frozenset[str]
    scripts: ScriptSource | None = None

    def mailbox_exists(self, name: str) -> bool:
        """RFC 5490 §3.1 mailboxexists, INBOX case-insensitive."""
        return name.upper() == "INBOX" or name in self.names

    def include_script(self, name: str, location: str) -> str | bytes | None:
        """RFC 6609 §3.2: the source of a personal or global script, None if missing."""
        return self.scripts(name, location) if self.scripts is not None else None


def action_json(action: Action) -> dict[str, Any]:
    """One action in the dry-run JSON shape."""
    if isinstance(action, Keep):
        return {"action": "store", "mailbox": "INBOX", "flags": _flags(action.flags)}
    if isinstance(action, FileInto):
        mailbox = "INBOX" if action.mailbox.upper() == "INBOX" else action.mailbox
        return {"action": "store", "mailbox": mailbox, "flags": _flags(action.flags)}
    if isinstance(action, Redirect):
        return {"action": "redirect", "address": action.address}
    if isinstance(action, Reject):
        return {"action": "reject", "reason": action.reason}
    if isinstance(action, Discard):
        return {"action": "discard"}
    if isinstance(action, Vacation):
        out: dict[str, Any] = {"action": "vacation"}
        if action.subject is not None:
            out["subject"] = action.subject
        if action.from_ is not None:
            out["from"] = action.from_
        out["seconds"] = action.seconds
        out["reason"] = action.reason
        return out
    if isinstance(action, Notify):
        return {"action": "notify", "method": "mailto:" + ",".join(action.recipients)
                if action.method.lower().startswith("mailto:") else action.method}
    raise TypeError(f"unknown action {action!r}")  # pragma: no cover - closed set


def _flags(flags: Iterable[str]) -> list[str]:
    return sorted({f.lower() for f in flags})


def _stored_flags(result: Result | None) -> dict[tuple[str, tuple[str, ...]], list[str]]:
    """(mailbox, lower-cased JSON flags) of each store action -> the flags as stored."""
    out: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for action in result.actions if result is not None else ():
        if isinstance(action, (Keep, FileInto)):
            shown = action_json(action)
            out[(shown["mailbox"], tuple(shown["flags"]))] = sorted(action.flags,
                                                                   key=str.lower)
    return out


def sort_actions(actions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort action dicts by their JSON text (the conformance README order)."""
    return sorted(actions, key=lambda a: json.dumps(a, sort_keys=True, ensure_ascii=False))


def result_json(result: Result) -> dict[str, Any]:
    """A Result as the dry-run JSON object."""
    return {"status": "ok", "errors": list(result.errors),
            "actions": sort_actions(action_json(a) for a in result.actions)}


def default_envelope(raw_message: bytes) -> tuple[str, str]:
    """Envelope sender and recipient taken from From/To when not given on the command line."""
    message = parse_message(raw_message)

    def first(name: str, fallback: str) -> str:
        for value in message.raw_header_values(name):
            for addr in parse_address_list(value):
                if addr is not None:
                    return addr.all
        return fallback

    return first("from", ""), first("to", "recipient@localhost")


def dry_run(script: bytes, raw_message: bytes, **options: Any) -> dict[str, Any]:
    """Compile and evaluate a script on a message; store nothing.

    Args:
        script, raw_message, options: as for `dry_run_result`.

    Returns:
        The dry-run JSON object (see the module docstring).
    """
    return dry_run_result(script, raw_message, **options)[0]


def dry_run_result(script: bytes, raw_message: bytes, *, envelope_from: str | None = None,
                   envelope_to: str | None = None, mailboxes: Iterable[str] = (),
                   environment: Environment | None = None,
                   scripts: ScriptSource | None = None,
                   before: Sequence[tuple[str, bytes]] = (),
                   after: Sequence[tuple[str, bytes]] = (),
                   limits: Limits | None = None) -> tuple[dict[str, Any], Result | None]:
    """Compile and evaluate a script on a message; store nothing.

    Args:
        script: the Sieve script bytes.
        raw_message: the message bytes.
        envelope_from: envelope sender ("" = null sender); default the From address.
        envelope_to: envelope recipient; default the first To address.
        mailboxes: mailboxes that exist (INBOX always does).
        environment: run facts (time, zone, delimiter ...); default `Environment()`.
        scripts: where `include` finds scripts (RFC 6609); None = nowhere.
        before, after: (name, source) of scripts run before and after `script` with
            Pigeonhole's multiscript rules (`mda.sieve.multiscript`).
        limits: compile and run-time limits; default `Limits()`.

    Returns:
        The dry-run JSON object (see the module docstring; a compile error in a before
        or after script names that script) and the engine's Result (None after a compile
        error), whose actions carry the flags as they would be stored and whose warnings
        name, for instance, ignored invalid flags.
    """
    programs = []
    for name, source in (*before, ("", script), *after):
        try:
            programs.append(compile_script(source, limits=limits))
        except SieveCompileError as exc:
            where = f"{name}: " if name else ""
            return {"status": "compile_error",
                    "errors": [f"{where}{exc}"],
                    "actions": []}, None
    default_from, default_to = default_envelope(raw_message)
    envelope = Envelope(default_from if envelope_from is None else envelope_from,
                        default_to if envelope_to is None else envelope_to)
    host = MailboxList(frozenset(mailboxes), scripts)
    message = parse_message(raw_message)
    if len(programs) == 1:
        result = evaluate(programs[0], message, envelope, environment or Environment(), host,
                          limits=limits)
    else:
        result = evaluate_sequence(programs, message, envelope, environment or Environment(),
                                   host, limits=limits)
    return result_json(result), result


def describe(report: dict[str, Any], result: Result | None = None) -> str:
    """A readable listing of a dry-run report, one line per action.

    Args:
        report: the dry-run JSON object.
        result: the Result it was made from (`dry_run_result`); when given, flags are shown
            as they would be stored (RFC 5232: `\\Seen`, keywords as first written), not
            lower-cased, and the run's warnings are listed.

    Returns:
        The listing, lines joined by newlines (no final newline).
    """
    lines: list[str] = []
    if report["status"] == "compile_error":
        lines.extend(f"compile error: {e}" for e in report["errors"])
        return "\n".join(lines)
    lines.extend(f"runtime error: {e} (implicit keep)" for e in report["errors"])
    if result is not None:
        lines.extend(f"warning: {w}" for w in result.warnings)
    stored = _stored_flags(result)
    for action in report["actions"]:
        kind = action["action"]
        if kind == "store":
            shown = stored.get((action["mailbox"], tuple(action["flags"])), action["flags"])
            flags = f" flags {' '.join(shown)}" if shown else ""
            lines.append(f"store into \"{action['mailbox']}\"{flags}")
        elif kind == "redirect":
            lines.append(f"redirect to <{action['address']}>")
        elif kind == "reject":
            lines.append(f"reject: {action['reason']!r}")
        elif kind == "vacation":
            lines.append(f"vacation reply after {action['seconds']} s: "
                         f"{action.get('subject', '(default subject)')!r}")
        elif kind == "notify":
            lines.append(f"notify {action['method']}")
        else:
            lines.append(kind)
    return "\n".join(lines)
