"""The one table of action interactions (RFC 5228 §2.10, §4; RFC 5429 §2; RFC 5230 §4.7).

Each action has a *kind*. When the script executes an action, `ActionList.add` checks it
against the actions executed so far:

| kind     | cancels implicit keep | conflicts with (run-time error)        | duplicate of        |
| -------- | --------------------- | -------------------------------------- | ------------------- |
| store    | yes (not with :copy)  | reject                                 | same mailbox        |
| redirect | yes (not with :copy)  | reject                                 | same address        |
| discard  | yes                   | -                                      | any discard         |
| reject   | yes                   | store, redirect, vacation, reject      | -                   |
| vacation | no                    | reject, vacation                       | -                   |
| notify   | no                    | -                                      | same method         |

- RFC 5228 §4.1/§4.2/§4.3: keep, fileinto and redirect cancel the implicit keep;
  RFC 3894 §3: with `:copy` they do not.
- RFC 5228 §2.10.3: "Implementations MUST NOT deliver a message to the same folder more
  than once"; keep and `fileinto "INBOX"` are the same folder, INBOX case-insensitive
  (RFC 3501 §5.1); for a repeated store the last `:flags` win (RFC 5232 §3.3).
- RFC 5228 §4.2: the same redirect address twice sends once.
- RFC 5228 §4.4: discard only cancels the implicit keep; explicit actions still happen.
- RFC 5429 §2.1/§2.2: reject/ereject "MUST NOT" be combined with keep, fileinto,
  redirect or vacation, and a second reject is an error too.
- RFC 5230 §4.7: a second vacation in one run is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mda.sieve.actions import Action, Discard, FileInto, Keep, Notify, Redirect, Reject, Vacation
from mda.sieve.errors import SieveRuntimeError

#: kind → (cancels implicit keep, kinds it conflicts with)
RULES: dict[str, tuple[bool, frozenset[str]]] = {
    "store": (True, frozenset({"reject"})),
    "redirect": (True, frozenset({"reject"})),
    "discard": (True, frozenset()),
    "reject": (True, frozenset({"store", "redirect", "vacation", "reject"})),
    "vacation": (False, frozenset({"reject", "vacation"})),
    "notify": (False, frozenset()),
}


def kind_of(action: Action) -> str:
    """The rule kind of an action."""
    if isinstance(action, (Keep, FileInto)):
        return "store"
    return {Redirect: "redirect", Discard: "discard", Reject: "reject",
            Vacation: "vacation", Notify: "notify"}[type(action)]


def mailbox_key(name: str) -> str:
    """Normalise a mailbox name for duplicate detection: INBOX is case-insensitive."""
    return "INBOX" if name.upper() == "INBOX" else name


def redirect_key(address: str) -> str:
    """Normalise a redirect address: domain case-insensitive (RFC 5321 §2.4)."""
    local, at, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}" if at else address


def duplicate_key(action: Action) -> tuple[str, str] | None:
    """Actions with equal keys are executed once; None = never a duplicate."""
    if isinstance(action, Keep):
        return ("store", "INBOX")
    if isinstance(action, FileInto):
        return ("store", mailbox_key(action.mailbox))
    if isinstance(action, Redirect):
        return ("redirect", redirect_key(action.address))
    if isinstance(action, Discard):
        return ("discard", "")
    if isinstance(action, Notify):
        return ("notify", action.method)
    return None


def cancels_implicit_keep(action: Action) -> bool:
    """RFC 5228 §2.10.2 / RFC 3894 §3: does executing it cancel the implicit keep?"""
    if isinstance(action, (FileInto, Redirect)) and action.copy:
        return False
    if isinstance(action, Keep) and action.implicit:
        return False
    return RULES[kind_of(action)][0]


@dataclass(slots=True)
class _Entry:
    action: Action
    line: int


class ActionList:
    """The actions executed so far, with duplicates merged and conflicts refused."""

    def __init__(self, max_actions: int, max_redirects: int) -> None:
        self.entries: list[_Entry] = []
        self.implicit_keep = True
        self.max_actions = max_actions
        self.max_redirects = max_redirects

    def add(self, action: Action, line: int = 0) -> None:
        """Execute an action: merge a duplicate, or append after the conflict checks.

        Raises:
            SieveRuntimeError: it conflicts with an earlier action, or a limit is hit.
        """
        self.check(action, line)
        kind = kind_of(action)
        if cancels_implicit_keep(action):
            self.implicit_keep = False
        key = duplicate_key(action)
        if key is not None:
            for entry in self.entries:
                if duplicate_key(entry.action) == key:
                    entry.action = _merge(entry.action, action)
                    return
        if kind == "redirect":
            count = sum(1 for e in self.entries if kind_of(e.action) == "redirect")
            if count >= self.max_redirects:
                raise SieveRuntimeError(
                    f"too many redirect actions (limit {self.max_redirects})", line)
        if len(self.entries) >= self.max_actions:
            raise SieveRuntimeError(f"too many actions (limit {self.max_actions})", line)
        self.entries.append(_Entry(action, line))

    def check(self, action: Action, line: int = 0) -> None:
        """Refuse an action that conflicts with one executed before (the table above).

        Raises:
            SieveRuntimeError: the conflict, naming both actions.
        """
        kind = kind_of(action)
        conflicts = RULES[kind][1]
        for entry in self.entries:
            other = kind_of(entry.action)
            if other in conflicts or kind in RULES[other][1]:
                raise SieveRuntimeError(
                    f"{_describe(action)} conflicts with earlier {_describe(entry.action)} "
                    "(RFC 5228 §2.10.3, RFC 5429 §2)", line)

    def add_committed(self, action: Action) -> None:
        """Take over an action an earlier script of a sequence already executed.

        Pigeonhole's multiscript rules: the actions of an earlier script are committed
        before the next script runs, so they never conflict with later ones and count
        against no limit; a duplicate still merges (the same mailbox is stored once),
        and a second vacation is dropped.
        """
        key = _committed_key(action)
        for entry in self.entries:
            if key is not None and _committed_key(entry.action) == key:
                entry.action = _merge(entry.action, action)
                return
        self.entries.append(_Entry(action, 0))

    def finish(self, implicit_flags: frozenset[str]) -> tuple[Action, ...]:
        """The final list, with the implicit keep appended when still in force."""
        if self.implicit_keep:
            implicit = Keep(flags=implicit_flags, implicit=True)
            for entry in self.entries:
                if duplicate_key(entry.action) == ("store", "INBOX"):
                    entry.action = _merge(entry.action, implicit)
                    break
            else:
                self.entries.append(_Entry(implicit, 0))
        return tuple(e.action for e in self.entries)


def _committed_key(action: Action) -> tuple[str, str] | None:
    """`duplicate_key`, plus: one vacation per script sequence (Pigeonhole)."""
    return ("vacation", "") if isinstance(action, Vacation) else duplicate_key(action)


def _merge(old: Action, new: Action) -> Action:
    """Combine two executions of the same target: later flags win, :copy only if both."""
    if isinstance(old, (Keep, FileInto)) and isinstance(new, (Keep, FileInto)):
        if isinstance(new, Keep) and new.implicit:
            return replace(old, flags=new.flags) if not isinstance(old, Keep) or old.implicit \
                else old
        merged = replace(old, flags=new.flags)
        if isinstance(merged, FileInto):
            create = merged.create or (isinstance(new, FileInto) and new.create)
            copy = merged.copy and (isinstance(new, FileInto) and new.copy)
            merged = replace(merged, create=create, copy=copy)
        return merged
    if isinstance(old, Redirect) and isinstance(new, Redirect):
        return replace(old, copy=old.copy and new.copy)
    return old


def _describe(action: Action) -> str:
    if isinstance(action, Keep):
        return "keep"
    if isinstance(action, FileInto):
        return f'fileinto "{action.mailbox}"'
    if isinstance(action, Redirect):
        return f'redirect "{action.address}"'
    if isinstance(action, Reject):
        return "ereject" if action.extended else "reject"
    return type(action).__name__.lower()
