"""Declarations shared by the core language and every extension.

A `CommandSpec` describes one command or test: its positional arguments, the tag groups
it accepts, the capability that must be required for it, an optional extra compile-time
check (`validate`) and its run-time behaviour (`run`). A `TagSpec` is a tagged argument
(RFC 5228 §2.6.2); it joins a command either through a group the command accepts
(`comparator`, `match-type`, `address-part`) or by naming the command (`:copy` on
`fileinto` and `redirect`, RFC 3894). An `Extension` bundles what one capability adds.

Compiled scripts are trees of `Call` nodes; nothing from sievelib survives compilation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ArgType = Literal["string", "stringlist", "number"]


@dataclass(frozen=True, slots=True)
class TagSpec:
    """A tagged argument.

    Attributes:
        name: the tag including the colon, lower case (":comparator").
        arg: the type of the value that follows the tag, or None for a flag tag.
        group: tags of one group are mutually exclusive on a command (RFC 5228 §2.7:
            one match type, one comparator, one address part).
        commands: command names the tag attaches to directly (besides its group).
        extension: the capability that must be required to use the tag (None = core).
        impl: behaviour shared by a group: the matcher of a match-type tag, the
            extractor of an address-part tag.
        check: extra compile-time check run when the tag is used, `check(call, compiler)`
            (after the command's own `validate`); it may return a replacement Call.
    """

    name: str
    arg: ArgType | None = None
    group: str | None = None
    commands: tuple[str, ...] = ()
    extension: str | None = None
    impl: Callable[..., Any] | None = None
    check: Callable[[Call, Any], Call | None] | None = None


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command, test or block command.

    Attributes:
        name: the identifier, lower case.
        kind: "command" (ends with `;`), "test", or "block" (followed by `{ ... }`).
        positional: the positional argument types in order.
        optional_leading: how many leading positional arguments may be left out
            (e.g. the variable list of `hasflag`, RFC 5232 §4).
        optional_trailing: how many trailing positional arguments may be left out (e.g.
            the value patterns of `deleteheader`, RFC 5293 §5); a left-out one is None.
        groups: tag groups accepted ("comparator", "match-type", "address-part", ...).
        extension: the capability that must be required (None = core RFC 5228).
        validate: extra compile-time checks, `validate(call, compiler) -> Call`; raises
            SieveCompileError via `compiler.error`.
        run: run-time behaviour: `run(ctx, call)`; a test returns bool.
    """

    name: str
    kind: Literal["command", "test", "block"]
    positional: tuple[ArgType, ...] = ()
    optional_leading: int = 0
    optional_trailing: int = 0
    groups: tuple[str, ...] = ()
    extension: str | None = None
    validate: Callable[[Call, Any], Call] | None = None
    run: Callable[[Any, Call], Any] | None = None


@dataclass(frozen=True, slots=True)
class Extension:
    """What one Sieve capability adds to the language.

    Attributes:
        name: the capability string used in `require` (RFC 5228 §3.2).
        commands: new commands and tests.
        tags: new tagged arguments, possibly on other extensions' commands.
        comparators: comparator names made available ("i;ascii-numeric").
        hidden: True for capabilities that are accepted but not advertised.
    """

    name: str
    commands: tuple[CommandSpec, ...] = ()
    tags: tuple[TagSpec, ...] = ()
    comparators: tuple[str, ...] = ()
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """One compiled command or test.

    Attributes:
        spec: its declaration.
        line, column: where the identifier starts (1-based).
        tags: tag name → value (True for flag tags).
        groups: group name → the tag name used for that group.
        args: positional values; None for a left-out optional leading argument. Strings
            are `str` or, with variables, `Template`; string lists are tuples.
        tests: nested tests (allof/anyof/not/if/elsif).
        block: the commands of the block (if/elsif/else/block commands).
        orelse: for `if`: the elsif/else chain that follows, as one nested `Call`.
        data: compile-time extras (resolved comparator, compiled regex, ...).
    """

    spec: CommandSpec
    line: int
    column: int
    tags: Mapping[str, Any] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)
    args: tuple[Any, ...] = ()
    tests: tuple[Call, ...] = ()
    block: tuple[Call, ...] = ()
    orelse: Call | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The command name."""
        return self.spec.name

    def tag(self, name: str, default: Any = None) -> Any:
        """The value of a tag, or `default`."""
        return self.tags.get(name, default)
