"""Compile a Sieve script into a validated `Program` (RFC 5228 §2, §3, §8).

sievelib parses (see `grammar`); this module turns its raw tree into `Call` nodes and
checks what sievelib does not:

- `require` only at the start of the script, never inside a block (RFC 5228 §3.2:
  "The require command, if present, MUST be used before anything other than a require");
- an unknown capability in `require` (§3.2: "If a script requires an extension that is
  not implemented, the script MUST NOT be run");
- commands, tests and tags of an extension that was not required (§3.2);
- argument types and counts, unknown and repeated tags, tagged arguments after
  positional ones (§2.6);
- comparators that were not required (§2.7.3), match types a comparator cannot do;
- per-command rules such as `address` on a header that holds no address (§5.1);
- the script-size and nesting limits of `Limits`.

Every error is a `SieveCompileError` with line and column. Programs are cached by the
SHA-256 of the source (`compile_cached`), so a script is never parsed per message.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

from mda.sieve import grammar
from mda.sieve.errors import ErrorKind, SieveCompileError
from mda.sieve.grammar import RawArg, RawNode
from mda.sieve.limits import DEFAULT_LIMITS, Limits
from mda.sieve.registry import REGISTRY
from mda.sieve.spec import Call, CommandSpec, TagSpec
from mda.sieve.strings import (LiteralError, decode_encoded_characters, decode_multiline,
                               decode_quoted, parse_number, parse_template)


@dataclass(frozen=True, slots=True)
class Program:
    """A compiled, validated script; immutable and shareable between threads.

    Attributes:
        commands: the top-level commands.
        required: the capabilities named in `require`.
        sha256: hex digest of the source.
        warnings: compile warnings (the script still runs).
    """

    commands: tuple[Call, ...]
    required: frozenset[str]
    sha256: str
    warnings: tuple[str, ...] = field(default=())

    def uses(self, capability: str) -> bool:
        """Was this capability required?"""
        return capability in self.required


class Compiler:
    """One compilation; extensions' `validate` hooks receive it to report errors."""

    def __init__(self, text: bytes, limits: Limits) -> None:
        self.text = text
        self.limits = limits
        self.required: set[str] = set()
        self.scoped: list[frozenset[str]] = []  # capabilities enabled by `ihave` blocks
        self.warnings: list[str] = []
        self.current: RawNode | None = None
        # block commands being compiled around the current node, innermost last, as
        # (name, tags): lets `break` and `extracttext` check their loop (RFC 5703 §3, §7)
        self.enclosing: list[tuple[str, dict[str, Any]]] = []

    # -- errors -------------------------------------------------------------------------

    def error(self, kind: ErrorKind, message: str, offset: int | None = None) -> NoReturn:
        """Raise a SieveCompileError at `offset` (default: the command being compiled)."""
        if offset is None:
            offset = self.current.offset if self.current is not None else 0
        line, column = grammar.position(self.text, offset)
        raise SieveCompileError(line, column, kind, message)

    def warn(self, message: str) -> None:
        """Record a compile warning."""
        self.warnings.append(message)

    def has(self, capability: str) -> bool:
        """Is the capability usable here (required, or enabled by an enclosing ihave)?"""
        return capability in self.required or any(capability in s for s in self.scoped)

    def need(self, capability: str | None, what: str, offset: int | None = None) -> None:
        """Fail unless `capability` is usable (RFC 5228 §3.2)."""
        if capability is not None and not self.has(capability):
            self.error("missing-require",
                       f"{what} requires the \"{capability}\" extension: add "
                       f"require \"{capability}\"; (RFC 5228 §3.2)", offset)

    # -- top level ----------------------------------------------------------------------

    def compile(self) -> Program:
        if len(self.text) > self.limits.script_size:
            raise SieveCompileError(1, 1, "limit",
                                    f"script is too large: {len(self.text)} bytes; the limit "
                                    f"is {self.limits.script_size} bytes", whole_script=True)
        nodes = grammar.parse(self.text)
        commands = self.block(nodes, depth=0, top=True)
        return Program(tuple(commands), frozenset(self.required),
                       hashlib.sha256(self.text).hexdigest(), tuple(self.warnings))

    def block(self, nodes: Sequence[RawNode], depth: int, top: bool = False) -> list[Call]:
        """Compile the commands of one block."""
        if depth > self.limits.max_nesting:
            self.error("limit", f"blocks nested deeper than {self.limits.max_nesting}",
                       nodes[0].offset if nodes else 0)
        out: list[Call] = []
        only_requires = top
        i = 0
        while i < len(nodes):
            node = nodes[i]
            self.current = node
            if node.name == "require":
                if not only_requires:
                    where = "inside a block" if not top else "after other commands"
                    self.error("require-position",
                               f"require is not allowed {where}: it MUST come before "
                               "anything else (RFC 5228 §3.2)")
                self.require(node)
                i += 1
                continue
            only_requires = False
            if node.name == "if":
                chain = [node]
                while i + 1 < len(nodes) and nodes[i + 1].name in ("elsif", "else"):
                    i += 1
                    chain.append(nodes[i])
                    if nodes[i].name == "else":
                        break
                out.append(self.if_chain(chain, depth))
            elif node.name in ("elsif", "else"):
                self.error("syntax", f"{node.name} without a preceding if (RFC 5228 §3.1)")
            else:
                out.append(self.command(node, depth))
            i += 1
        return out

    def require(self, node: RawNode) -> None:
        """RFC 5228 §3.2: record the capabilities, refusing unknown ones."""
        if len(node.args) != 1 or node.args[0].kind not in ("string", "multiline",
                                                             "stringlist"):
            self.error("bad-argument", "require takes one string list of capabilities "
                       "(RFC 5228 §3.2)")
        for arg in _items(node.args[0]):
            name = self.literal(arg)
            if name not in REGISTRY.capabilities:
                self.error("unknown-extension",
                           f"unknown extension \"{name}\" in require (RFC 5228 §3.2)",
                           arg.offset)
            self.required.add(name)

    # -- commands and tests -------------------------------------------------------------

    def if_chain(self, chain: list[RawNode], depth: int) -> Call:
        """Compile `if` with its sibling `elsif`/`else` into nested Calls (RFC 5228 §3.1)."""
        result: Call | None = None
        for node in reversed(chain):
            self.current = node
            spec = REGISTRY.commands[node.name]
            tests = tuple(self.test(a.test, depth + 1) for a in node.args if a.test)
            extra = self.ihave_scope(tests)
            if extra:
                self.scoped.append(extra)
            try:
                block = tuple(self.block(node.children, depth + 1))
            finally:
                if extra:
                    self.scoped.pop()
            line, column = grammar.position(self.text, node.offset)
            result = Call(spec, line, column, tests=tests, block=block, orelse=result)
        assert result is not None
        return result

    def ihave_scope(self, tests: tuple[Call, ...]) -> frozenset[str]:
        """Capabilities an `if ihave [...]` test enables inside its block (RFC 5463 §4)."""
        if len(tests) == 1 and tests[0].name == "ihave":
            return frozenset(tests[0].data.get("available", ()))
        return frozenset()

    def test(self, node: RawNode | None, depth: int) -> Call:
        """Compile a test."""
        assert node is not None
        if depth > self.limits.max_nesting:
            self.error("limit", f"tests nested deeper than {self.limits.max_nesting}",
                       node.offset)
        spec = REGISTRY.commands.get(node.name)
        if spec is None or spec.kind != "test":
            self.current = node
            what = "unknown test" if spec is None else "not a test"
            self.error("unknown-command", f"{what} '{node.name}' (RFC 5228 §5)")
        return self.call(spec, node, depth)

    def command(self, node: RawNode, depth: int) -> Call:
        """Compile a command (not if/elsif/else)."""
        spec = REGISTRY.commands.get(node.name)
        if spec is None or spec.kind == "test":
            what = "unknown command" if spec is None else "a test cannot be used as command"
            self.error("unknown-command", f"{what} '{node.name}' (RFC 5228 §4)")
        return self.call(spec, node, depth)

    def call(self, spec: CommandSpec, node: RawNode, depth: int) -> Call:
        """Validate one command or test against its spec and build its Call."""
        self.current = node
        self.need(spec.extension, f"'{spec.name}'", node.offset)
        tags: dict[str, Any] = {}
        groups: dict[str, str] = {}
        positional: list[RawArg] = []
        tests: list[Call] = []
        args = list(node.args)
        i = 0
        while i < len(args):
            arg = args[i]
            if arg.kind == "tag":
                tag_name = arg.raw.decode("ascii").lower()  # type: ignore[union-attr]
                tag = REGISTRY.tag_for(spec.name, tag_name)
                if tag is None:
                    self.error("bad-argument",
                               f"unknown tagged argument {tag_name} for '{spec.name}' "
                               "(RFC 5228 §2.6.2)", arg.offset)
                if positional:
                    self.error("bad-argument",
                               f"tagged argument {tag_name} after positional arguments "
                               "of '{spec.name}' (RFC 5228 §2.6.2)", arg.offset)
                self.need(tag.extension, f"tag {tag_name}", arg.offset)
                if tag_name in tags:
                    self.error("bad-argument", f"tag {tag_name} given twice "
                               "(RFC 5228 §2.6.2)", arg.offset)
                if tag.group is not None:
                    if tag.group in groups:
                        self.error("bad-argument",
                                   f"{tag_name} conflicts with {groups[tag.group]}: only one "
                                   f"{tag.group} is allowed (RFC 5228 §2.7)", arg.offset)
                    groups[tag.group] = tag_name
                value: Any = True
                if tag.arg is not None:
                    if i + 1 >= len(args) or args[i + 1].kind in ("tag", "test"):
                        self.error("missing-argument",
                                   f"{tag_name} needs a {tag.arg} argument", arg.offset)
                    i += 1
                    value = self.value(args[i], tag.arg, tag_name)
                tags[tag_name] = value
            elif arg.kind == "test":
                tests.append(self.test(arg.test, depth + 1))
            else:
                positional.append(arg)
            i += 1
        if tests and spec.name not in ("allof", "anyof", "not"):
            self.error("bad-argument", f"'{spec.name}' does not take a test argument")
        wanted = spec.positional
        least = len(wanted) - spec.optional_leading - spec.optional_trailing
        if len(positional) < least:
            missing = wanted[len(positional)] if len(positional) < len(wanted) else "argument"
            self.error("missing-argument",
                       f"'{spec.name}' needs {least} positional argument(s), got "
                       f"{len(positional)} (missing {missing})")
        if len(positional) > len(wanted):
            self.error("bad-argument", f"too many arguments for '{spec.name}' "
                       f"(takes {len(wanted)})", positional[len(wanted)].offset)
        absent = len(wanted) - len(positional)
        skipped = 0 if spec.optional_trailing else absent
        values: list[Any] = [None] * skipped
        for want, arg in zip(wanted[skipped:], positional):
            values.append(self.value(arg, want, f"'{spec.name}'"))
        values.extend([None] * (absent - skipped))
        block: tuple[Call, ...] = ()
        if spec.kind == "block":
            self.enclosing.append((spec.name, tags))
            try:
                block = tuple(self.block(node.children, depth + 1))
            finally:
                self.enclosing.pop()
        line, column = grammar.position(self.text, node.offset)
        call = Call(spec, line, column, tags=tags, groups=groups, args=tuple(values),
                    tests=tuple(tests), block=block)
        self.current = node
        if spec.validate is not None:
            call = spec.validate(call, self)
        for tag_name in tags:
            tag = REGISTRY.tag_for(spec.name, tag_name)
            if tag is not None and tag.check is not None:
                # a check may return a replacement Call (e.g. :mime swaps the run function)
                call = tag.check(call, self) or call
        return call

    # -- values -------------------------------------------------------------------------

    def value(self, arg: RawArg, want: str, what: str) -> Any:
        """Convert a raw argument to the wanted type, or fail with its position."""
        if want == "number":
            if arg.kind != "number":
                self.error("bad-argument", f"{what} expects a number, found {_kind(arg)}",
                           arg.offset)
            try:
                return parse_number(arg.raw.decode("ascii"))  # type: ignore[union-attr]
            except LiteralError as exc:
                self.error("bad-value", str(exc), arg.offset)
        if want == "string":
            if arg.kind not in ("string", "multiline"):
                self.error("bad-argument", f"{what} expects a string, found {_kind(arg)}",
                           arg.offset)
            return self.string(arg)
        if arg.kind not in ("string", "multiline", "stringlist"):
            self.error("bad-argument", f"{what} expects a string list, found {_kind(arg)}",
                       arg.offset)
        return tuple(self.string(item) for item in _items(arg))

    def literal(self, arg: RawArg) -> str:
        """Decode a string token, with encoded characters but without variables."""
        raw = arg.raw.decode("utf-8")  # type: ignore[union-attr]
        try:
            text = decode_multiline(raw) if arg.kind == "multiline" else decode_quoted(raw)
            if self.has("encoded-character"):
                text = decode_encoded_characters(text)
        except LiteralError as exc:
            self.error("bad-value", str(exc), arg.offset)
        return text

    def string(self, arg: RawArg) -> Any:
        """Decode a string argument; a Template when variables are in use."""
        text = self.literal(arg)
        if self.has("variables"):
            namespaces = frozenset({"global"}) if self.has("include") else frozenset()
            return parse_template(text, namespaces)
        return text

    def replace(self, call: Call, **changes: Any) -> Call:
        """A copy of `call` with fields changed (for validate hooks)."""
        return replace(call, **changes)


def _items(arg: RawArg) -> tuple[RawArg, ...]:
    return arg.items if arg.kind == "stringlist" else (arg,)


def _kind(arg: RawArg) -> str:
    return {"string": "a string", "multiline": "a string", "stringlist": "a string list",
            "number": "a number", "tag": "a tag", "test": "a test"}[arg.kind]


def compile_script(source: str | bytes, *, limits: Limits | None = None) -> Program:
    """Compile a Sieve script (RFC 5228).

    Args:
        source: the script; str or UTF-8 bytes (RFC 5228 §2.2: scripts are UTF-8).
        limits: resource limits; default `Limits()`.

    Returns:
        The validated Program.

    Raises:
        SieveCompileError: the script is invalid; `.line`, `.column`, `.kind`, `.message`.
    """
    text = source.encode("utf-8") if isinstance(source, str) else bytes(source)
    REGISTRY.register()
    return Compiler(text, limits or DEFAULT_LIMITS).compile()


_CACHE: OrderedDict[tuple[str, Limits], Program] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 512


def compile_cached(source: str | bytes, *, limits: Limits | None = None) -> Program:
    """`compile_script`, cached by the SHA-256 of the source (LRU of 512 programs).

    Compile errors are not cached; they are raised every time.

    Raises:
        SieveCompileError: as `compile_script`.
    """
    text = source.encode("utf-8") if isinstance(source, str) else bytes(source)
    key = (hashlib.sha256(text).hexdigest(), limits or DEFAULT_LIMITS)
    with _CACHE_LOCK:
        program = _CACHE.get(key)
        if program is not None:
            _CACHE.move_to_end(key)
            return program
    program = compile_script(text, limits=limits)
    with _CACHE_LOCK:
        _CACHE[key] = program
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return program


__all__ = ["Program", "Compiler", "compile_script", "compile_cached", "TagSpec"]
