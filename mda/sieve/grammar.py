"""sievelib glue: parse a script into a raw tree whose nodes know their source position.

sievelib is the parser (RFC 5228 §8 grammar: commands, blocks, tests, test lists, string
lists). It validates arguments with its own per-command tables, which are both too strict
(extensions it does not know) and too lax (see `compiler`), so `register_all()` replaces
every leaf command with one generic class that records its raw arguments and the offset of
each token; the compiler then validates them against mda's own command table.

sievelib keeps command classes in module globals and parse state in class attributes, so
registration happens once and parsing is serialised by `_PARSE_LOCK`.

sievelib does not record positions: `_RecordingLexer` notes the byte offset of every token
it hands to the parser, and the generic commands read the offset of the token being parsed
when they are created or receive an argument.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sievelib import commands as sl_commands
from sievelib import parser as sl_parser

from mda.sieve.errors import SieveCompileError

_PARSE_LOCK = threading.Lock()
_REGISTERED: set[str] = set()
# the lexer of the parse in progress (only ever touched with _PARSE_LOCK held)
_ACTIVE: list[_RecordingLexer] = []

#: sievelib's structural commands that mda keeps (with a block check added).
STRUCTURAL = frozenset({"if", "elsif", "else", "not", "allof", "anyof", "true", "false"})


@dataclass(slots=True)
class RawArg:
    """One argument as written.

    Attributes:
        kind: "string" (quoted), "multiline" (`text:`), "number", "tag", "stringlist", "test".
        raw: the token text (bytes) for string/multiline/number/tag; None otherwise.
        offset: byte offset of the argument's first token.
        items: the string tokens of a string list.
        test: the nested test node when kind == "test".
    """

    kind: str
    raw: bytes | None
    offset: int
    items: tuple[RawArg, ...] = ()
    test: RawNode | None = None
    obj: object = None


@dataclass(slots=True)
class RawNode:
    """A command or test as sievelib parsed it, with our recorded positions.

    Attributes:
        name: lower-cased identifier.
        offset: byte offset of the identifier.
        args: the arguments in source order (tests of allof/anyof/not/if included).
        children: commands of the block, for if/elsif/else and block commands.
        has_block: the command was followed by a `{ ... }` block.
    """

    name: str
    offset: int
    args: list[RawArg] = field(default_factory=list)
    children: list[RawNode] = field(default_factory=list)
    has_block: bool = False


class _RecordingLexer(sl_parser.Lexer):
    """sievelib's lexer, also recording (type, value, start offset) of every token."""

    tokens: list[tuple[str, bytes, int]]

    def scan(self, text: bytes) -> Iterator[tuple[str, bytes]]:
        self.tokens = []
        for ttype, tvalue in super().scan(text):
            start = self.pos
            # the parser rewinds by one to re-read a token: record it only once
            if not self.tokens or self.tokens[-1][2] < start:
                self.tokens.append((ttype, tvalue, start))
            yield ttype, tvalue


def _lexer() -> _RecordingLexer:
    return _ACTIVE[-1]


class _BlockCheck:
    """Mixin: a command that takes a block must not end with `;` (RFC 5228 §8.2)."""

    def complete_cb(self) -> None:
        raise sl_parser.ParseError(f"'{self.name}' needs a block '{{ ... }}', not ';'")  # type: ignore[attr-defined]


class _GenericCommand(sl_commands.Command):
    """Any leaf command or test: records its arguments, validated later by the compiler."""

    args_definition: list = []
    _type = "action"
    non_deterministic_args = True

    def __init__(self, parent: sl_commands.Command | None = None) -> None:
        super().__init__(parent)
        self.offset = _lexer().pos
        self.raw_args: list[RawArg] = []
        self.done = False

    def check_next_arg(self, atype: str, avalue, add: bool = True,
                       check_extension: bool = True) -> bool:
        if add:
            self.raw_args.append(_raw_arg(atype, avalue))
        return True

    def iscomplete(self, atype: str | None = None, avalue: str | None = None) -> bool:
        return self.done

    def reassign_arguments(self) -> None:
        self.done = True

    def complete_cb(self) -> None:
        self.terminated = True


class _GenericBlockCommand(_BlockCheck, _GenericCommand):
    """A command followed by a block (e.g. `foreverypart`): never complete before `{`."""

    _type = "control"
    accept_children = True
    non_deterministic_args = False

    def iscomplete(self, atype: str | None = None, avalue: str | None = None) -> bool:
        return False


class IfCommand(_BlockCheck, sl_commands.IfCommand):
    """sievelib's `if`, refusing `if TEST;`."""


class ElsifCommand(_BlockCheck, sl_commands.ElsifCommand):
    """sievelib's `elsif`, refusing `elsif TEST;`."""


class ElseCommand(_BlockCheck, sl_commands.ElseCommand):
    """sievelib's `else`, refusing `else;`."""


def _raw_arg(atype: str, avalue) -> RawArg:
    """Build the RawArg for the token the parser is handling now."""
    tokens = _lexer().tokens
    if atype == "test":
        return RawArg("test", None, getattr(avalue, "mda_offset", 0), obj=avalue)
    if atype == "stringlist":
        # the current token is "]": walk back to the matching "["
        idx = len(tokens) - 1
        items: list[RawArg] = []
        while idx >= 0 and tokens[idx][0] != "left_bracket":
            ttype, tvalue, start = tokens[idx]
            if ttype in ("string", "multiline"):
                items.append(RawArg(ttype, tvalue, start))
            idx -= 1
        items.reverse()
        return RawArg("stringlist", None, tokens[idx][2], items=tuple(items))
    ttype, tvalue, start = tokens[-1]
    return RawArg(ttype, tvalue, start)


def _class_name(name: str) -> str:
    return f"{name.lower().capitalize()}Command"


def register_all(tests: Iterable[str], commands: Iterable[str],
                 block_commands: Iterable[str] = ()) -> None:
    """Register mda's command names with sievelib (idempotent).

    Every name sievelib knows that is not structural is replaced by a generic recorder
    too, so a command mda does not support parses and is refused by the compiler with a
    position, instead of failing inside sievelib's own tables.

    Args:
        tests: names used as tests.
        commands: names used as commands ending in `;`.
        block_commands: names of commands followed by a block.
    """
    wanted: dict[str, type] = {}
    for obj in list(vars(sl_commands).values()):
        if (isinstance(obj, type) and issubclass(obj, sl_commands.Command)
                and obj.__name__.endswith("Command") and hasattr(obj, "args_definition")
                and obj.__dict__.get("args_definition") is not None):
            name = obj.__name__[: -len("Command")].lower()
            if name and name not in STRUCTURAL and not issubclass(obj, _GenericCommand):
                base_type = getattr(obj, "_type", "action")
                wanted[name] = type(_class_name(name), (_GenericCommand,), {"_type": base_type})
    for name in tests:
        wanted[name] = type(_class_name(name), (_GenericCommand,), {"_type": "test"})
    for name in commands:
        wanted[name] = type(_class_name(name), (_GenericCommand,), {"_type": "action"})
    for name in block_commands:
        wanted[name] = type(_class_name(name), (_GenericBlockCommand,), {})
    fresh = [cls for name, cls in wanted.items() if name not in _REGISTERED]
    if fresh or "if" not in _REGISTERED:
        sl_commands.add_commands(fresh + [IfCommand, ElsifCommand, ElseCommand])
        _REGISTERED.update(wanted)
        _REGISTERED.update({"if", "elsif", "else"})


def position(text: bytes, offset: int) -> tuple[int, int]:
    """Line and column (1-based; column counted in characters) of a byte offset."""
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind(b"\n", 0, offset) + 1
    line = text.count(b"\n", 0, offset) + 1
    column = len(text[line_start:offset].decode("utf-8", errors="replace")) + 1
    return line, column


def _convert(node: sl_commands.Command, text: bytes) -> RawNode:
    """Turn a sievelib command (and its subtree) into a RawNode.

    Raises:
        SieveCompileError: a command that is not a test was not ended by ';' (sievelib
            lets `keep { }` through).
    """
    if isinstance(node, _GenericCommand):
        if (node.get_type() != "test" and not isinstance(node, _GenericBlockCommand)
                and not getattr(node, "terminated", False)):
            line, column = position(text, node.offset)
            raise SieveCompileError(line, column, "syntax",
                                    f"'{node.name}' must end with ';' (RFC 5228 §8.2)")
        raw = RawNode(node.name, node.offset, list(node.raw_args))
        for arg in raw.args:
            if arg.kind == "test":
                arg.test = _convert(arg.obj, text)  # type: ignore[arg-type]
                arg.obj = None
        raw.children = [_convert(c, text) for c in node.children]
        raw.has_block = isinstance(node, _GenericBlockCommand)
        return raw
    offset = getattr(node, "mda_offset", 0)
    raw = RawNode(node.name, offset)
    tests = node.arguments.get("test") or node.arguments.get("tests") or []
    if not isinstance(tests, list):
        tests = [tests]
    for test in tests:
        sub = _convert(test, text)
        raw.args.append(RawArg("test", None, sub.offset, test=sub))
    raw.children = [_convert(c, text) for c in node.children]
    raw.has_block = node.accept_children and node.get_type() == "control"
    return raw


class _Parser(sl_parser.Parser):
    """sievelib's parser with the recording lexer and position stamps on every command."""

    def __init__(self) -> None:
        super().__init__()
        self.lexer = _RecordingLexer(sl_parser.Parser.lrules)


_original_get_command_instance = sl_commands.get_command_instance


def _stamped_get_command_instance(name: str, parent=None, checkexists: bool = True):
    """sievelib's factory, stamping the identifier's offset on every command it makes."""
    cmd = _original_get_command_instance(name, parent, checkexists=False)
    cmd.mda_offset = _lexer().pos
    return cmd


def parse(text: bytes) -> list[RawNode]:
    """Parse a script with sievelib.

    Args:
        text: the script (UTF-8 bytes).

    Returns:
        The top-level commands, with positions.

    Raises:
        SieveCompileError: a syntax error (kind `syntax` or `unknown-command`), positioned
            at the token where sievelib stopped.
    """
    with _PARSE_LOCK:
        parser = _Parser()
        _ACTIVE.append(parser.lexer)
        saved = sl_parser.get_command_instance
        sl_parser.get_command_instance = _stamped_get_command_instance
        try:
            ok = parser.parse(text)
            pending = parser._Parser__curcommand  # type: ignore[attr-defined]
            tokens = parser.lexer.tokens
        finally:
            sl_parser.get_command_instance = saved
            _ACTIVE.pop()
    if not ok:
        offset = parser.lexer.pos
        if "must follow" in parser.error:
            # sievelib notices at the closing brace; point at the elsif/else itself
            offset = max((start for ttype, value, start in tokens
                          if ttype == "identifier" and value.lower() in (b"elsif", b"else")
                          and start <= offset), default=offset)
        message = parser.error.split(": ", 1)[-1]
        kind = "syntax"
        if "unknown command" in message:
            kind = "unknown-command"
            message = message.replace("parsing error: ", "")
        line, column = position(text, offset)
        raise SieveCompileError(line, column, kind, _reword(message))  # type: ignore[arg-type]
    if pending is not None:
        offset = tokens[-1][2] + len(tokens[-1][1]) if tokens else len(text)
        line, column = position(text, offset)
        raise SieveCompileError(
            line, column, "syntax",
            f"missing ';' after '{pending.name}' at end of script (RFC 5228 §8.2)")
    return [_convert(node, text) for node in parser.result]


_TOKEN_NAMES = {
    "left_bracket": "'['", "right_bracket": "']'", "left_parenthesis": "'('",
    "right_parenthesis": "')'", "left_cbracket": "'{'", "right_cbracket": "'}'",
    "semicolon": "';'", "comma": "','", "multiline": "a text: string",
    "string": "a string", "identifier": "an identifier", "tag": "a tag", "number": "a number",
}


def _reword(message: str) -> str:
    """Make sievelib's messages read like a compiler's."""
    message = message.replace("parsing error: ", "")
    if message.startswith("Expected test command, "):
        name = message.split("'")[1]
        return (f"'{name}' is not a test; a ';' is probably missing before it "
                "(RFC 5228 §8.2)")
    if "may not appear as a first command" in message:
        name = message.split(" ")[0]
        return f"'{name}' is a test and cannot be used as a command (RFC 5228 §8.2)"
    if " found while " in message:
        found, _, rest = message.partition(" found while ")
        expected = rest.split(" expected")[0]
        where = rest.split(" expected", 1)[1]
        names = " or ".join(_TOKEN_NAMES.get(t, t) for t in expected.split("|"))
        at_end = " at end of script" if "end of file" in where else ""
        return f"expected {names} but found {_TOKEN_NAMES.get(found, found)}{at_end}"
    if message.startswith("end of script reached while "):
        expected = message.rsplit(" ", 2)[-2]
        names = " or ".join(_TOKEN_NAMES.get(t, t) for t in expected.split("|"))
        return f"end of script reached while {names} expected"
    if message.startswith("unknown token /*"):
        return "unterminated bracket comment '/*' (RFC 5228 §2.3)"
    return message
