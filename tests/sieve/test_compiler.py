"""Compile errors carry line, column and kind; sievelib's gaps are closed."""

from __future__ import annotations

import pytest

from mda.sieve import SieveCompileError, compile_cached, compile_script

ERRORS = [
    # (script, line, column, kind)
    ('require "fileinto"\nfileinto "Work";', 2, 1, "syntax"),            # missing ';'
    ('keep;\nkeep', 2, 5, "syntax"),                                      # last command
    ('keep;\nrequire "fileinto";', 2, 1, "require-position"),
    ('if true {\n  require "fileinto";\n}', 2, 3, "require-position"),
    ('require ["fileinto", "no-such-ext"];', 1, 22, "unknown-extension"),
    ('fileinto "x";', 1, 1, "missing-require"),
    ('reject "x";', 1, 1, "missing-require"),
    ('require "fileinto";\nfileinto :flags "a" "x";', 2, 10, "missing-require"),
    ('if header :comparator "i;nope" :is "a" "b" { keep; }', 1, 4, "bad-value"),
    ('header :is "subject" "x";', 1, 1, "syntax"),                      # test as command
    ('if keep { }', 1, 4, "syntax"),                                      # command as test
    ('if address :is "subject" "x" { keep; }', 1, 4, "bad-value"),
    ('if header :is "subject" { keep; }', 1, 4, "missing-argument"),
    ('if header :is :contains "s" "x" { keep; }', 1, 15, "bad-argument"),
    ('if header :bogus "s" "x" { keep; }', 1, 11, "bad-argument"),
    ('if header "s" :is "x" { keep; }', 1, 15, "bad-argument"),         # tag after positional
    ('if size 100 { keep; }', 1, 4, "missing-argument"),
    ('if size :over "1" { keep; }', 1, 15, "bad-argument"),
    ('keep "extra";', 1, 6, "bad-argument"),
    ('if true;', 1, 8, "syntax"),
    ('keep {}', 1, 1, "syntax"),
    ('keep;\n/* never closed', 2, 1, "syntax"),
    ('if true { keep; }\n  frobnicate;', 2, 3, "unknown-command"),
    ('redirect "not an address";', 1, 1, "bad-value"),
    ('require "reject";\nreject text: junk\nx\n.\n;', 2, 8, "bad-value"),
    ('elsif true { keep; }', 1, 1, "syntax"),
    ('if size :over 99999999999999999999G { keep; }', 1, 15, "bad-value"),
]


@pytest.mark.parametrize("script,line,column,kind", ERRORS, ids=[e[0][:30] for e in ERRORS])
def test_compile_error_position(script: str, line: int, column: int, kind: str) -> None:
    with pytest.raises(SieveCompileError) as info:
        compile_script(script)
    err = info.value
    assert (err.line, err.column, err.kind) == (line, column, kind), err
    assert str(err).startswith(f"line {line}, column {column}: ")


def test_column_counts_characters_not_bytes() -> None:
    with pytest.raises(SieveCompileError) as info:
        compile_script('# é\nkeep; if header "é" :is "x" { keep; }')
    assert (info.value.line, info.value.column) == (2, 21)


VALID = [
    "",
    "# just a comment\n",
    'require ["fileinto"];\nrequire "envelope";\nfileinto "A";',
    'require "fileinto"; if true { fileinto "A"; } elsif false { keep; } else { discard; }',
    'REQUIRE "fileinto"; IF TRUE { FILEINTO "A"; }',
    'if anyof(not true, allof(true, exists "subject")) /* c */ { keep; }',
    'keep;\r\nstop;\r\n',
    'if size :under 1M { keep; }',
    'require "comparator-i;octet"; if header :comparator "i;octet" "s" "x" { keep; }',
]


@pytest.mark.parametrize("script", VALID)
def test_valid_scripts_compile(script: str) -> None:
    program = compile_script(script)
    assert program.sha256


def test_strings_are_decoded() -> None:
    program = compile_script('require "fileinto"; fileinto "a\\"b\\\\c\\q";')
    assert program.commands[0].args[0] == 'a"b\\cq'


def test_text_block_dot_unstuffing_and_crlf() -> None:
    program = compile_script('require "reject";\nreject text: # comment\n..dot\nline\n.\n;')
    assert program.commands[0].args[0] == ".dot\r\nline\r\n"


def test_quoted_line_break_becomes_crlf() -> None:
    program = compile_script('require "reject";\nreject "a\nb";')
    assert program.commands[0].args[0] == "a\r\nb"


@pytest.mark.parametrize("text,value", [("1", 1), ("2K", 2048), ("3m", 3 << 20),
                                        ("1G", 1 << 30)])
def test_numbers_with_multipliers(text: str, value: int) -> None:
    program = compile_script(f"if size :over {text} {{ keep; }}")
    assert program.commands[0].tests[0].args[0] == value


def test_compile_cached_returns_the_same_program() -> None:
    assert compile_cached("keep;") is compile_cached(b"keep;")
    assert compile_cached("keep;") is not compile_cached("discard;")


def test_compile_errors_are_not_cached() -> None:
    for _ in range(2):
        with pytest.raises(SieveCompileError):
            compile_cached("keep")


def test_invalid_utf8_script_is_a_compile_error() -> None:
    with pytest.raises(SieveCompileError):
        compile_script(b'require "fileinto"; fileinto "\xff";')
