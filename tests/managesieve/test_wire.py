"""The sans-IO ManageSieve parser and encoders (RFC 5804 §4), driven with exact bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mda.managesieve.wire import (NEED_DATA, Atom, BadCommand, Command, CommandParser,
                                  ErrorKind, ResponseCode, String, encode_command, encode_line,
                                  encode_response, encode_string)


def events(data: bytes | list[bytes], *, max_literal: int = 1000,
           max_line: int = 200) -> list[Command | BadCommand]:
    """Everything the parser yields for `data` (fed in the pieces given)."""
    parser = CommandParser(max_literal=max_literal, max_line=max_line)
    out: list[Command | BadCommand] = []
    for piece in [data] if isinstance(data, bytes) else data:
        parser.receive_data(piece)
        while (event := parser.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def one(data: bytes, **limits: int) -> Command | BadCommand:
    (event,) = events(data, **limits)
    return event


# ---------------------------------------------------------------------- commands


def test_name_is_case_insensitive_and_arguments_keep_their_form() -> None:
    event = one(b'putScript "main" {11+}\r\nkeep;\r\nstop\r\n')
    assert isinstance(event, Command)
    assert event.name == "PUTSCRIPT"
    assert event.args == (String("main"), String("keep;\r\nstop", literal=True))


def test_synchronising_literal_form_is_read_at_once() -> None:
    """ManageSieve has no continuation request: `{N}` is read like `{N+}`."""
    event = one(b"CHECKSCRIPT {5}\r\nkeep;\r\n")
    assert event == Command((Atom("CHECKSCRIPT"), String("keep;", literal=True)))


def test_literal_counts_octets_not_characters() -> None:
    name = "Jörg’s 規則 😀"
    data = name.encode()
    event = one(b"GETSCRIPT {%d+}\r\n" % len(data) + data + b"\r\n")
    assert event == Command((Atom("GETSCRIPT"), String(name, literal=True)))


def test_quoted_string_escapes() -> None:
    event = one(b'NOOP "a \\"quoted\\" \\\\ word"\r\n')
    assert event == Command((Atom("NOOP"), String('a "quoted" \\ word')))


def test_numbers_and_atoms() -> None:
    assert one(b'HAVESPACE "x" 1234\r\n') == Command(
        (Atom("HAVESPACE"), String("x"), Atom("1234")))


def test_command_split_across_reads_and_several_per_read() -> None:
    pieces = [b"NO", b'OP "a', b'"\r\nCAPABILITY\r', b"\nPUTSCRIPT {3+}\r\nab", b"c\r\n"]
    assert events(pieces) == [
        Command((Atom("NOOP"), String("a"))),
        Command((Atom("CAPABILITY"),)),
        Command((Atom("PUTSCRIPT"), String("abc", literal=True))),
    ]


def test_bare_lf_ends_a_line_and_empty_lines_are_ignored() -> None:
    assert events(b"\r\n\nNOOP\nLOGOUT\r\n") == [Command((Atom("NOOP"),)),
                                                  Command((Atom("LOGOUT"),))]


def test_line_of_strings_has_no_name() -> None:
    """An AUTHENTICATE continuation (RFC 5804 §2.1) is a line holding one string."""
    event = one(b'"AGpvZQBzZWNyZXQ="\r\n')
    assert isinstance(event, Command)
    assert event.name == ""
    assert event.args == (String("AGpvZQBzZWNyZXQ="),)


def test_need_data_until_the_literal_is_complete() -> None:
    parser = CommandParser(max_literal=100)
    parser.receive_data(b"PUTSCRIPT \"x\" {10+}\r\n12345")
    assert parser.next_event() is NEED_DATA
    assert parser.pending
    parser.receive_data(b"67890\r\n")
    assert isinstance(parser.next_event(), Command)
    assert not parser.pending


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(("data", "kind", "detail"), [
    pytest.param(b"PUTSCRIPT \"a\" {abc}\r\n", ErrorKind.BAD_LITERAL,
                 "argument 2: literal size 'abc' is not a number", id="letters"),
    pytest.param(b"PUTSCRIPT \"a\" {-1}\r\n", ErrorKind.BAD_LITERAL,
                 "argument 2: literal size '-1' is not a number", id="negative"),
    pytest.param(b"PUTSCRIPT \"a\" {}\r\n", ErrorKind.BAD_LITERAL,
                 "argument 2: literal size '' is not a number", id="empty"),
    pytest.param(b"PUTSCRIPT \"a\" {99999999999}\r\n", ErrorKind.BAD_LITERAL,
                 "argument 2: literal size 99999999999 is over 4294967295", id="over-32-bit"),
    pytest.param(b"PUTSCRIPT {5+} \"a\"\r\n", ErrorKind.BAD_LITERAL,
                 "argument 1: a literal is {N+} or {N} at the end of the line",
                 id="not-at-end"),
    pytest.param(b"NOOP \"abc\r\n", ErrorKind.UNTERMINATED_QUOTED,
                 "argument 1: quoted string has no closing '\"'", id="unterminated"),
    pytest.param(b"NOOP \"a\\nb\"\r\n", ErrorKind.BAD_ESCAPE,
                 "argument 1: backslash may only escape '\"' or '\\\\' in a quoted string, "
                 "not 'n'", id="escape"),
    pytest.param(b"NOOP \"\xff\"\r\n", ErrorKind.NOT_UTF8,
                 "argument 1: not UTF-8 at octet 0", id="quoted-utf8"),
    pytest.param(b"GETSCRIPT {2+}\r\n\xc3\x28\r\n", ErrorKind.NOT_UTF8,
                 "argument 1: not UTF-8 at octet 0", id="literal-utf8"),
    pytest.param(b"NOOP \"a\x00b\"\r\n", ErrorKind.BAD_CHARACTER,
                 "argument 1: NUL in a quoted string", id="nul"),
    pytest.param(b"NOOP \"a\rb\"\r\n", ErrorKind.BAD_CHARACTER,
                 "argument 1: CR in a quoted string", id="lone-cr"),
    pytest.param(b"N\xc3\xb6OP\r\n", ErrorKind.BAD_CHARACTER,
                 "unexpected character '0xc3' at column 2", id="non-ascii-atom"),
    pytest.param(b"NOOP (x)\r\n", ErrorKind.BAD_CHARACTER,
                 "unexpected character '(' at column 6", id="paren"),
])
def test_malformed_line_is_one_error_and_the_next_command_parses(
        data: bytes, kind: ErrorKind, detail: str) -> None:
    first, second = events(data + b"NOOP\r\n")
    assert first == BadCommand(kind, detail, first.command, first.argument)
    assert second == Command((Atom("NOOP"),))


def test_error_names_the_command_and_argument() -> None:
    event = one(b'RENAMESCRIPT "a" "b\\x"\r\n')
    assert isinstance(event, BadCommand)
    assert (event.command, event.argument) == ("RENAMESCRIPT", 2)


def test_oversized_literal_is_reported_at_once_then_skipped() -> None:
    parser = CommandParser(max_literal=10)
    parser.receive_data(b'PUTSCRIPT "big" {25+}\r\n0123456789')
    event = parser.next_event()
    assert event == BadCommand(ErrorKind.LITERAL_TOO_LARGE,
                               "argument 2: literal of 25 octets is over the limit of 10",
                               "PUTSCRIPT", 2, 25)
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"0123456789abcde \"trailing\" {3+}\r\nxyz\r\nNOOP\r\n")
    assert parser.next_event() == Command((Atom("NOOP"),))
    assert parser.next_event() is NEED_DATA
    assert not parser.pending


def test_long_line_is_reported_before_its_end_arrives() -> None:
    parser = CommandParser(max_literal=10, max_line=50)
    parser.receive_data(b"PUTSCRIPT " + b"x" * 60)
    event = parser.next_event()
    assert event == BadCommand(ErrorKind.LINE_TOO_LONG, "command line longer than 50 octets",
                               "PUTSCRIPT")
    parser.receive_data(b"y" * 5000)
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"\r\nNOOP\r\n")
    assert parser.next_event() == Command((Atom("NOOP"),))


def test_line_limit_does_not_count_literal_octets() -> None:
    script = "#" * 150 + "\r\nkeep;"
    event = one(encode_command("PUTSCRIPT", "s", script), max_line=60, max_literal=200)
    assert event == Command((Atom("PUTSCRIPT"), String("s"), String(script, literal=True)))


def test_complete_long_line_is_one_error() -> None:
    assert events(b"NOOP " + b"a" * 300 + b"\r\nNOOP\r\n", max_line=100) == [
        BadCommand(ErrorKind.LINE_TOO_LONG, "command line longer than 100 octets", "NOOP"),
        Command((Atom("NOOP"),)),
    ]


def test_discard_buffered_drops_pipelined_plaintext() -> None:
    parser = CommandParser(max_literal=10)
    parser.receive_data(b'STARTTLS\r\nNOOP "injected"\r\n')
    assert parser.next_event() == Command((Atom("STARTTLS"),))
    assert parser.discard_buffered() == len(b'NOOP "injected"\r\n')
    assert parser.next_event() is NEED_DATA


# ---------------------------------------------------------------------- encoding


@pytest.mark.parametrize(("text", "wire"), [
    ("main", b'"main"'),
    ('say "hi" \\ bye', b'"say \\"hi\\" \\\\ bye"'),
    ("Jörg", '"Jörg"'.encode()),
    ("", b'""'),
    ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
    ("nul\x00", b"{4}\r\nnul\x00"),
    ("x" * 1024, b'"' + b"x" * 1024 + b'"'),
    ("x" * 1025, b"{1025}\r\n" + b"x" * 1025),
])
def test_encode_string(text: str, wire: bytes) -> None:
    assert encode_string(text) == wire


@pytest.mark.parametrize(("args", "wire"), [
    (("OK",), b"OK\r\n"),
    (("NO", ResponseCode("NONEXISTENT"), "no script 'x'"),
     b"NO (NONEXISTENT) \"no script 'x'\"\r\n"),
    (("OK", ResponseCode("TAG", "t 1"), "Done"), b'OK (TAG "t 1") "Done"\r\n'),
    (("NO", ResponseCode("QUOTA/MAXSIZE")), b"NO (QUOTA/MAXSIZE)\r\n"),
    # Control characters in a text are escaped: it stays one printable line.
    (("OK", ResponseCode("WARNINGS"), "line 1\r\nline 2"),
     b'OK (WARNINGS) "line 1\\\\x0d\\\\x0aline 2"\r\n'),
    (("NO", None, "unknown token \x00\x1b[2J\u2028\x85"),
     b'NO "unknown token \\\\x00\\\\x1b[2J\\\\u2028\\\\x85"\r\n'),
    (("NO", None, "x" * 1021 + "\x00"), b"NO {1025}\r\n" + b"x" * 1021 + b"\\x00\r\n"),
    (("BYE", None, "idle timeout"), b'BYE "idle timeout"\r\n'),
])
def test_encode_response(args: tuple, wire: bytes) -> None:
    assert encode_response(*args) == wire


def test_encode_response_refuses_other_statuses() -> None:
    with pytest.raises(ValueError, match="not a ManageSieve status"):
        encode_response("MAYBE")


def test_encode_line() -> None:
    assert encode_line("SIEVE", "fileinto vacation") == b'"SIEVE" "fileinto vacation"\r\n'
    assert encode_line("STARTTLS") == b'"STARTTLS"\r\n'


# ---------------------------------------------------------------------- round trip

_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_names = st.sampled_from(["PUTSCRIPT", "noop", "RenameScript", "CHECKSCRIPT", "X-FOO"])


@settings(max_examples=300, deadline=None)
@given(name=_names, args=st.lists(st.one_of(_texts, st.integers(0, 2**32 - 1)), max_size=4),
       cut=st.integers(0, 2000))
def test_round_trip_encode_then_parse(name: str, args: list[str | int], cut: int) -> None:
    """Any command encoded by `encode_command`, fed in two arbitrary pieces, parses back."""
    wire = encode_command(name, *args)
    cut = min(cut, len(wire))
    (event,) = events([wire[:cut], wire[cut:]], max_literal=10_000, max_line=10_000)
    assert isinstance(event, Command)
    assert event.name == name.upper()
    assert [a.text for a in event.args] == [str(a) for a in args]
    assert [isinstance(a, Atom) for a in event.args] == [isinstance(a, int) for a in args]


def test_round_brackets_after_a_response_code_are_sent_square() -> None:
    """The PyPI managesieve client reads a response code up to the last `)` of the line."""
    assert encode_response("OK", ResponseCode("WARNINGS"), "zone (RFC 5260)") == \
        b'OK (WARNINGS) "zone [RFC 5260]"\r\n'
    assert encode_response("NO", None, "line 1 (RFC 5228)") == b'NO "line 1 (RFC 5228)"\r\n'


OVERLONG_THEN_LITERAL = (b'PUTSCRIPT "' + b"n" * 300 + b'" {31+}\r\n'
                         + b'PUTSCRIPT "injected" "keep;"\r\n' + b"\r\n" + b"NOOP\r\n")


@pytest.mark.parametrize("piece", [len(OVERLONG_THEN_LITERAL), 1, 7, 64],
                         ids=lambda n: f"fed-{n}-octets-at-a-time")
def test_literal_after_an_overlong_line_is_skipped_not_run(piece: int) -> None:
    """The literal announced at the end of a line too long to parse is the command's
    data: it is skipped with the line, and the next command is the next real one."""
    data = OVERLONG_THEN_LITERAL
    assert events([data[i:i + piece] for i in range(0, len(data), piece)]) == [
        BadCommand(ErrorKind.LINE_TOO_LONG, "command line longer than 200 octets",
                   "PUTSCRIPT"),
        Command((Atom("NOOP"),)),
    ]


def test_command_goes_on_after_the_literal_of_an_overlong_line() -> None:
    """After the skipped literal the same command continues (more strings, another
    literal): all of it is skipped silently."""
    data = (b"PUTSCRIPT {300+}\r\n" + b"n" * 300 + b" " + b"x" * 250 + b" {000000000000005}\r\n"
            + b"NOOP\n" + b' "after" {6}\r\nLOGOUT\r\n' + b"CAPABILITY\r\n")
    assert events(data) == [
        BadCommand(ErrorKind.LINE_TOO_LONG, "command line longer than 200 octets",
                   "PUTSCRIPT"),
        Command((Atom("CAPABILITY"),)),
    ]


@pytest.mark.parametrize("header", [b"{abc+}", b"{99999999999+}", b"{5+} x", b'"{5+}"'])
def test_overlong_line_not_ending_in_a_valid_literal_ends_there(header: bytes) -> None:
    assert events(b"NOOP " + b"a" * 300 + b" " + header + b"\r\nNOOP\r\n") == [
        BadCommand(ErrorKind.LINE_TOO_LONG, "command line longer than 200 octets", "NOOP"),
        Command((Atom("NOOP"),)),
    ]
