"""Each limit of `Limits` at N (allowed) and N+1 (refused)."""

from __future__ import annotations

import pytest

from mda.sieve import Keep, Limits, SieveCompileError, compile_script
from tests.sieve.helpers import run

N = 5


def _runtime_error(result) -> bool:
    return bool(result.errors) and result.actions == (Keep(implicit=True),)


def test_script_size() -> None:
    limits = Limits(script_size=100)
    script = "keep;" + " " * 95
    assert len(script) == 100
    compile_script(script, limits=limits)
    with pytest.raises(SieveCompileError) as info:
        compile_script(script + " ", limits=limits)
    assert info.value.kind == "limit"
    assert info.value.whole_script
    assert str(info.value) == "script is too large: 101 bytes; the limit is 100 bytes"


def test_script_size_counts_bytes_not_characters() -> None:
    limits = Limits(script_size=100)
    script = "# " + "é" * 49 + "\nkeep;"  # 55 characters, 106 bytes of UTF-8
    with pytest.raises(SieveCompileError) as info:
        compile_script(script, limits=limits)
    assert "106 bytes; the limit is 100 bytes" in str(info.value)


def test_positioned_errors_still_give_line_and_column() -> None:
    with pytest.raises(SieveCompileError) as info:
        compile_script("keep;\n  frobnicate;")
    assert not info.value.whole_script
    assert str(info.value).startswith("line 2, column 3: ")


def test_default_script_size_is_one_mebibyte() -> None:
    assert Limits().script_size == 1024 * 1024


def _fileintos(n: int) -> str:
    return 'require "fileinto";\n' + "".join(f'fileinto "box{i}";\n' for i in range(n))


def test_max_actions() -> None:
    limits = Limits(max_actions=N)
    assert not run(_fileintos(N), limits=limits).errors
    assert _runtime_error(run(_fileintos(N + 1), limits=limits))


def test_default_max_actions() -> None:
    assert not run(_fileintos(32)).errors
    assert _runtime_error(run(_fileintos(33)))


def _redirects(n: int) -> str:
    return "".join(f'redirect "u{i}@example.net";\n' for i in range(n))


def test_max_redirects() -> None:
    assert not run(_redirects(4)).errors
    assert _runtime_error(run(_redirects(5)))
    limits = Limits(max_redirects=N)
    assert not run(_redirects(N), limits=limits).errors
    assert _runtime_error(run(_redirects(N + 1), limits=limits))


def test_duplicate_redirects_count_once() -> None:
    assert not run(_redirects(4) + 'redirect "u0@EXAMPLE.net";').errors


def _nested(depth: int) -> str:
    return "if true { " * depth + "keep;" + " }" * depth


def test_max_nesting() -> None:
    limits = Limits(max_nesting=N)
    compile_script(_nested(N), limits=limits)
    with pytest.raises(SieveCompileError) as info:
        compile_script(_nested(N + 1), limits=limits)
    assert info.value.kind == "limit"


def test_max_steps() -> None:
    limits = Limits(max_steps=N)
    assert not run("keep;" * N, limits=limits).errors
    assert _runtime_error(run("keep;" * (N + 1), limits=limits))


def test_max_variable_size_truncates() -> None:
    limits = Limits(max_variable_size=N)
    script = ('require ["variables", "fileinto"];\nset "a" "{}";\nfileinto "${{a}}";')
    result = run(script.format("x" * N), limits=limits)
    assert result.actions[0].mailbox == "x" * N
    result = run(script.format("x" * (N + 1)), limits=limits)
    assert result.actions[0].mailbox == "x" * N


def test_max_variables() -> None:
    limits = Limits(max_variables=N)
    head = 'require "variables";\n'
    assert not run(head + "".join(f'set "v{i}" "x";' for i in range(N)), limits=limits).errors
    assert _runtime_error(
        run(head + "".join(f'set "v{i}" "x";' for i in range(N + 1)), limits=limits))


def test_max_match_values() -> None:
    limits = Limits(max_match_values=3)
    script = ('require ["variables", "fileinto"];\n'
              'if header :matches "subject" "*y *e*" {{ fileinto "[${{{}}}]"; }}')
    assert run(script.format(2), limits=limits).actions[0].mailbox == "[r]"
    assert run(script.format(3), limits=limits).actions[0].mailbox == "[]"
    assert run(script.format(3)).actions[0].mailbox == "[port]"


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        Limits(max_actions=-1)
