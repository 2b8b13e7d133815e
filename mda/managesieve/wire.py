"""The ManageSieve wire format (RFC 5804 §4), sans-IO: bytes in, commands out; replies to bytes.

Parsing, in the h11 style: the caller owns the socket, feeds what it read to
`CommandParser.receive_data` and takes events from `next_event` until it answers
`NEED_DATA`:

    parser = CommandParser(max_line=8192, max_literal=1024 * 1024)
    parser.receive_data(b'PUTSCRIPT "main" {11+}\\r\\nkeep;\\r\\nstop;\\r\\n')
    parser.next_event()   # Command(tokens=(Atom('PUTSCRIPT'), String('main'), String(...)))
    parser.next_event()   # NEED_DATA

A command line is tokens separated by spaces and ended by CRLF (a bare LF is accepted too):
atoms (the command name, numbers), quoted strings (`"..."` with `\\"` and `\\\\` escapes) and
literals (`{N+}` or `{N}` ending the line, then exactly N octets, RFC 5804 §4
`literal-c2s`; ManageSieve has no continuation request, so both forms are read at once).
Strings must be UTF-8 (RFC 5804 §4 `literal-utf8`, `SAFE-UTF8-CHAR`).

A malformed line is one `BadCommand` event naming what is wrong (`ErrorKind`) and, when it
got that far, the command; the parser then skips to the end of that command and carries
on, so the connection stays usable:

- a line longer than `max_line` (literal octets not counted) is reported as soon as the
  limit is passed and skipped up to its CRLF. The tail of the skipped line is kept: when
  it ends with a literal header (`{N+}` or `{N}`, N a valid number) the N octets that
  follow are the literal's, not commands, so they are skipped too, with the rest of the
  command after them;
- a literal longer than `max_literal` is reported when its header arrives, and its octets
  are then read and thrown away as they come (memory stays bounded), with the rest of the
  command;
- a literal size that is not a number 0..4294967295 (RFC 5804 §4 `number` is 32-bit) is
  reported and the line ends at that header: the octets that follow, if any, are read as
  the next command lines.

Empty lines are ignored.

Encoding (server to client, RFC 5804 §4): `encode_string` sends a quoted string when the
text is safe for one (no CR, LF or NUL, at most 1024 octets) and a literal `{N}\\r\\n...`
otherwise; `encode_response` builds `OK`/`NO`/`BYE` lines with an optional response code
(`ResponseCode`) and human-readable text. `encode_command` is the client side, used by tests.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Final

MAX_NUMBER: Final = 4_294_967_295  # RFC 5804 §4: number is a 32-bit unsigned number
MAX_QUOTED: Final = 1024  # RFC 5804 §4: quoted holds at most 1024 octets
DEFAULT_MAX_LINE: Final = 8192


class _NeedData:
    """The sentinel `next_event` returns when it needs more bytes."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True)
class Atom:
    """A bare word: a command name, a number, `ACTIVE`. ASCII only, as received."""

    text: str


@dataclass(frozen=True, slots=True)
class String:
    """A string argument, quoted or literal (RFC 5804 §4 `string`), decoded from UTF-8.

    Attributes:
        text: the value, escapes removed.
        literal: it came as a literal (`{N+}`), not as a quoted string.
    """

    text: str
    literal: bool = False


Token = Atom | String


@dataclass(frozen=True, slots=True)
class Command:
    """One complete command line.

    Attributes:
        tokens: everything on the line in order, literals included.

    `name` is the first token upper-cased when it is an atom (command names are
    case-insensitive, RFC 5804 §4), else "" (a line of strings: an AUTHENTICATE
    continuation, RFC 5804 §2.1). `args` are the tokens after the name, or all of them when
    `name` is "".
    """

    tokens: tuple[Token, ...]

    @property
    def name(self) -> str:
        first = self.tokens[0] if self.tokens else None
        return first.text.upper() if isinstance(first, Atom) else ""

    @property
    def args(self) -> tuple[Token, ...]:
        return self.tokens[1:] if self.name else self.tokens


class ErrorKind(enum.Enum):
    """What made a command line unreadable."""

    LINE_TOO_LONG = "line too long"
    LITERAL_TOO_LARGE = "literal too large"
    BAD_LITERAL = "bad literal"
    UNTERMINATED_QUOTED = "unterminated quoted string"
    BAD_ESCAPE = "bad escape"
    NOT_UTF8 = "not UTF-8"
    BAD_CHARACTER = "unexpected character"


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A command line that could not be parsed; the parser has skipped (or is skipping) it.

    Attributes:
        kind: what is wrong.
        detail: a human-readable reason (names the argument and position where known).
        command: the command name (upper-cased) when the line started with one, else "".
        argument: the 1-based argument number the error is in, 0 when not in an argument.
        size: for `LITERAL_TOO_LARGE`, the announced literal size in octets, else 0.
    """

    kind: ErrorKind
    detail: str
    command: str = ""
    argument: int = 0
    size: int = 0


Event = Command | BadCommand | _NeedData

_ATOM = re.compile(rb"[!#$%&'*+,\-./0-9:;<=>?@A-Z\[\]^_`a-z|~]+")
_LITERAL_HEADER = re.compile(rb"\{([^}\r\n]*?)(\+?)\}")
_LITERAL_AT_END = re.compile(rb"\{([0-9]+)\+?\}\r?\Z")
_TAIL = 64  # octets kept of a skipped line to find a literal header (leading zeros too)


class _Skip(enum.Enum):
    NONE = 0
    LINE = 1  # discard up to and including the next LF
    LITERAL = 2  # discard `_skip_left` octets, then parse the rest of the command silently


@dataclass
class _Partial:
    """The command being assembled across literals."""

    tokens: list[Token] = field(default_factory=list)
    silent: bool = False  # already reported: parse to its end, report nothing more


class CommandParser:
    """Incremental parser of ManageSieve command lines (RFC 5804 §4).

    Args:
        max_line: the longest command line accepted, in octets, without the CRLF and
            without literal contents.
        max_literal: the largest literal accepted, in octets.

    Never raises on input; every problem is a `BadCommand` event.
    """

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE, max_literal: int) -> None:
        self.max_line = max_line
        self.max_literal = max_literal
        self._buffer = bytearray()
        self._partial = _Partial()
        self._skip = _Skip.NONE
        self._skip_left = 0
        self._literal_left = -1  # >= 0: reading a literal of that many more octets
        self._literal_octets = bytearray()
        self._literal_arg = 0
        self._line_length = 0  # octets of the command so far, literals not counted
        self._skip_tail = b""  # the last octets of the line being skipped

    def receive_data(self, data: bytes) -> None:
        """Add bytes received from the client."""
        self._buffer += data

    @property
    def pending(self) -> bool:
        """True while a command has started but not ended (mid-line or mid-literal), or
        unparsed bytes are buffered."""
        return bool(self._buffer) or bool(self._partial.tokens) or self._literal_left >= 0 \
            or self._skip is not _Skip.NONE

    def discard_buffered(self) -> int:
        """Drop every byte received but not parsed yet, and any command half-read.

        Used after STARTTLS (RFC 5804 §2.2): plaintext the client sent behind the command
        must not be taken as coming over TLS.

        Returns:
            The number of octets dropped from the buffer.
        """
        dropped = len(self._buffer)
        self._buffer.clear()
        self._reset_command()
        self._skip = _Skip.NONE
        self._skip_tail = b""
        return dropped

    def next_event(self) -> Event:
        """The next complete command, a `BadCommand`, or `NEED_DATA`."""
        while True:
            if self._skip is _Skip.LINE:
                end = self._buffer.find(b"\n")
                if end < 0:
                    self._skip_tail = (self._skip_tail + self._buffer)[-_TAIL:]
                    self._buffer.clear()
                    return NEED_DATA
                tail = (self._skip_tail + self._buffer[:end])[-_TAIL:]
                del self._buffer[:end + 1]
                self._end_skipped_line(tail)
                continue
            if self._skip is _Skip.LITERAL:
                take = min(self._skip_left, len(self._buffer))
                del self._buffer[:take]
                self._skip_left -= take
                if self._skip_left:
                    return NEED_DATA
                self._skip = _Skip.NONE
                continue
            if self._literal_left >= 0:
                event = self._read_literal()
                if event is None:
                    continue
                return event
            end = self._buffer.find(b"\n")
            if end < 0:
                if self._line_length + len(self._buffer) <= self.max_line:
                    return NEED_DATA
                # Report now, without waiting for the end of a line that may never come.
                event = self._bad(ErrorKind.LINE_TOO_LONG,
                                  f"command line longer than {self.max_line} octets")
                self._skip = _Skip.LINE
                self._skip_tail = b""
                if event is not None:
                    return event
                continue
            line = bytes(self._buffer[:end])
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._line_length + len(line) > self.max_line:
                event = self._bad(ErrorKind.LINE_TOO_LONG,
                                  f"command line longer than {self.max_line} octets")
                del self._buffer[:end + 1]
                self._end_skipped_line(line[-_TAIL:])
                if event is not None:
                    return event
                continue
            del self._buffer[:end + 1]
            self._line_length += len(line)
            event = self._parse_line(line)
            if event is not None:
                return event

    # ------------------------------------------------------------------ internals

    def _reset_command(self) -> None:
        self._partial = _Partial()
        self._line_length = 0
        self._literal_left = -1
        self._literal_octets = bytearray()

    def _end_skipped_line(self, tail: bytes) -> None:
        """A line too long to parse has been skipped up to its LF; `tail` is its end.

        When it ends with a literal header the command goes on after that literal: skip
        the literal's octets and parse the rest of the command silently (it was reported).
        Otherwise the command is over.
        """
        self._skip = _Skip.NONE
        self._skip_tail = b""
        match = _LITERAL_AT_END.search(tail)
        if match is None or int(match.group(1)) > MAX_NUMBER:
            self._reset_command()
            return
        self._partial.silent = True
        self._line_length = 0
        self._skip = _Skip.LITERAL
        self._skip_left = int(match.group(1))

    def _bad(self, kind: ErrorKind, detail: str, *, argument: int = 0,
             size: int = 0) -> BadCommand | None:
        """The error event for the current command, or None when it was already reported."""
        if self._partial.silent:
            return None
        self._partial.silent = True
        tokens = self._partial.tokens
        if tokens:
            name = tokens[0].text.upper() if isinstance(tokens[0], Atom) else ""
        else:  # a line too long to parse: name the command it starts with
            match = _ATOM.match(self._buffer)
            name = match.group().decode("ascii").upper() if match else ""
        return BadCommand(kind, detail, name, argument, size)

    def _argument_number(self) -> int:
        """1-based number of the argument about to be added (the name is not counted)."""
        tokens = self._partial.tokens
        has_name = bool(tokens) and isinstance(tokens[0], Atom)
        return len(tokens) + (0 if has_name else 1)

    def _parse_line(self, line: bytes) -> Event | None:
        """Parse one line (without its CRLF); None when the command goes on in a literal
        or the line produced nothing to report."""
        pos = 0
        size = len(line)
        while pos < size:
            while pos < size and line[pos] in b" \t":
                pos += 1
            if pos >= size:
                break
            byte = line[pos]
            number = self._argument_number()
            if byte == 0x22:  # '"'
                text, pos, error = _quoted(line, pos)
                if error is not None:
                    return self._finish_bad(error[0], f"argument {number}: {error[1]}",
                                            number)
                self._partial.tokens.append(String(text))
            elif byte == 0x7B:  # '{'
                match = _LITERAL_HEADER.match(line, pos)
                if match is None or match.end() != size:
                    return self._finish_bad(
                        ErrorKind.BAD_LITERAL,
                        f"argument {number}: a literal is {{N+}} or {{N}} at the end of "
                        f"the line", number)
                return self._start_literal(match.group(1), number)
            else:
                match = _ATOM.match(line, pos)
                if match is None:
                    shown = chr(byte) if 0x20 < byte < 0x7F else f"0x{byte:02x}"
                    return self._finish_bad(
                        ErrorKind.BAD_CHARACTER,
                        f"unexpected character {shown!r} at column {pos + 1}", number)
                self._partial.tokens.append(Atom(match.group().decode("ascii")))
                pos = match.end()
        return self._complete()

    def _finish_bad(self, kind: ErrorKind, detail: str, argument: int) -> BadCommand | None:
        """Report a malformed line whose end has been read; the command is over."""
        event = self._bad(kind, detail, argument=argument)
        self._reset_command()
        return event

    def _complete(self) -> Command | BadCommand | None:
        """The line ended with no literal pending: the command is complete."""
        partial = self._partial
        self._reset_command()
        if partial.silent or not partial.tokens:
            return None
        return Command(tuple(partial.tokens))

    def _start_literal(self, digits: bytes, number: int) -> BadCommand | None:
        """A literal header ended the line: read (or skip) its octets next."""
        text = digits.decode("ascii", "replace")
        if not digits.isdigit():
            return self._finish_bad(ErrorKind.BAD_LITERAL,
                                    f"argument {number}: literal size {text!r} is not a "
                                    f"number", number)
        count = int(digits)
        if count > MAX_NUMBER:
            return self._finish_bad(ErrorKind.BAD_LITERAL,
                                    f"argument {number}: literal size {count} is over "
                                    f"{MAX_NUMBER}", number)
        if count > self.max_literal:
            event = self._bad(ErrorKind.LITERAL_TOO_LARGE,
                              f"argument {number}: literal of {count} octets is over the "
                              f"limit of {self.max_literal}", argument=number, size=count)
            self._skip = _Skip.LITERAL
            self._skip_left = count
            return event
        self._literal_left = count
        self._literal_arg = number
        self._literal_octets = bytearray()
        return None

    def _read_literal(self) -> Event | None:
        """Collect literal octets; None once the literal is complete (parsing goes on)."""
        take = min(self._literal_left, len(self._buffer))
        if not self._partial.silent:
            self._literal_octets += self._buffer[:take]
        del self._buffer[:take]
        self._literal_left -= take
        if self._literal_left:
            return NEED_DATA
        self._literal_left = -1
        octets = bytes(self._literal_octets)
        self._literal_octets = bytearray()
        if self._partial.silent:
            return None
        try:
            text = octets.decode("utf-8")
        except UnicodeDecodeError as exc:
            event = self._bad(ErrorKind.NOT_UTF8,
                              f"argument {self._literal_arg}: not UTF-8 at octet {exc.start}", argument=self._literal_arg)
            return event
        self._partial.tokens.append(String(text, literal=True))
        return None


def _quoted(line: bytes, pos: int) -> tuple[str, int, tuple[ErrorKind, str] | None]:
    """Parse a quoted string starting at `line[pos] == '"'`.

    Returns:
        (text, position after the closing quote, None) or ("", pos, (kind, reason)).
    """
    out = bytearray()
    index = pos + 1
    size = len(line)
    while index < size:
        byte = line[index]
        if byte == 0x22:
            try:
                return out.decode("utf-8"), index + 1, None
            except UnicodeDecodeError as exc:
                return "", pos, (ErrorKind.NOT_UTF8, f"not UTF-8 at octet {exc.start}")
        if byte == 0x5C:  # backslash: RFC 5804 §4 QUOTED-SPECIALS are only " and \
            if index + 1 >= size or line[index + 1] not in b'"\\':
                shown = chr(line[index + 1]) if index + 1 < size else "end of line"
                return "", pos, (ErrorKind.BAD_ESCAPE,
                                 f"backslash may only escape '\"' or '\\\\' in a quoted "
                                 f"string, not {shown!r}")
            out.append(line[index + 1])
            index += 2
            continue
        if byte in (0x00, 0x0D):
            return "", pos, (ErrorKind.BAD_CHARACTER,
                             f"{'NUL' if byte == 0 else 'CR'} in a quoted string")
        out.append(byte)
        index += 1
    return "", pos, (ErrorKind.UNTERMINATED_QUOTED, "quoted string has no closing '\"'")


# ---------------------------------------------------------------------- encoding

_UNSAFE_IN_QUOTED = re.compile("[\r\n\x00]")


def encode_string(text: str) -> bytes:
    """A string for the client (RFC 5804 §4 `string`).

    Args:
        text: any text.

    Returns:
        `"..."` with `"` and `\\` escaped when the text holds no CR, LF or NUL and is at
        most 1024 octets; otherwise the literal `{N}\\r\\n` followed by the UTF-8 octets
        (N counts octets).
    """
    data = text.encode("utf-8")
    if len(data) <= MAX_QUOTED and not _UNSAFE_IN_QUOTED.search(text):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """A response code (RFC 5804 §1.3): `QUOTA/MAXSIZE`, `NONEXISTENT`, `TAG "x"` ...

    Attributes:
        name: the code, e.g. `TRYLATER`, `QUOTA/MAXSCRIPTS`.
        argument: its string argument (`TAG`, `SASL`), or None.
    """

    name: str
    argument: str | None = None

    def encode(self) -> bytes:
        """`(NAME)` or `(NAME string)`."""
        inner = self.name.encode("ascii")
        if self.argument is not None:
            inner += b" " + encode_string(self.argument)
        return b"(" + inner + b")"


_BRACKETS_AFTER_CODE = str.maketrans("()", "[]")
# C0 controls, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with every control character written as an escape (`\\x00`, `\\u2028`).

    Human-readable response texts often quote what the client sent (a compiler error
    naming an unknown token); a NUL, an escape sequence or a line break from the client
    must not reach the user's screen or log raw.
    """
    return _CONTROL.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                   else f"\\u{ord(m.group()):04x}"), text)


def encode_response(status: str, code: ResponseCode | None = None,
                    text: str | None = None) -> bytes:
    """A final response line (RFC 5804 §4 `response-oknobye`).

    Args:
        status: `OK`, `NO` or `BYE`.
        code: an optional response code.
        text: optional human-readable text (sent quoted or, when it is long, as a
            literal); control characters in it are escaped (`printable`), so it is one
            line. After a response code its round brackets are sent as
            square ones: the PyPI `managesieve` client takes the code up to the *last* `)`
            of the line, so `OK (WARNINGS) "... (RFC 5260 §4.1)"` would reach its caller
            as a mangled code and no text.

    Returns:
        The line, CRLF included.

    Raises:
        ValueError: `status` is not OK, NO or BYE.
    """
    if status not in ("OK", "NO", "BYE"):
        raise ValueError(f"not a ManageSieve status: {status!r}")
    out = status.encode("ascii")
    if code is not None:
        out += b" " + code.encode()
        if text is not None:
            text = text.translate(_BRACKETS_AFTER_CODE)
    if text is not None:
        out += b" " + encode_string(printable(text))
    return out + b"\r\n"


def encode_line(*items: str | None) -> bytes:
    """One line of strings separated by spaces (capability and LISTSCRIPTS lines).

    Args:
        items: strings to send as `string`; None items are skipped.

    Returns:
        The line, CRLF included.
    """
    return b" ".join(encode_string(item) for item in items if item is not None) + b"\r\n"


def encode_command(name: str, *args: str | int) -> bytes:
    """A client command line (RFC 5804 §4): strings quoted when safe, else `{N+}` literals.

    Args:
        name: the command name.
        args: strings (encoded as strings) and ints (sent as number atoms).

    Returns:
        The command, CRLF included.
    """
    parts = [name.encode("ascii")]
    for arg in args:
        if isinstance(arg, int):
            parts.append(str(arg).encode("ascii"))
            continue
        data = arg.encode("utf-8")
        if len(data) <= MAX_QUOTED and not _UNSAFE_IN_QUOTED.search(arg):
            parts.append(b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"')
        else:
            parts.append(b"{%d+}\r\n" % len(data) + data)
    return b" ".join(parts) + b"\r\n"


__all__ = [
    "NEED_DATA", "Atom", "BadCommand", "Command", "CommandParser", "ErrorKind", "Event",
    "ResponseCode", "String", "Token", "encode_command", "encode_line", "encode_response",
    "encode_string", "printable",
]
