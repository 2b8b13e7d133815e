"""include, return and global (RFC 6609). Expected results were checked against
Pigeonhole's sieve-test where it decides the same way (see the module's deviations)."""

from __future__ import annotations

import json

import pytest

from mda.sieve import (Envelope, Environment, Limits, SieveCompileError, compile_script,
                       evaluate, parse_message)
from mda.sieve.dryrun import MailboxList, result_json
from tests.sieve.helpers import MESSAGE

REQ = 'require ["include", "variables", "fileinto", "imap4flags"];\n'


def run(script: str, personal: dict[str, str] | None = None,
        global_: dict[str, str] | None = None, *, limits: Limits | None = None,
        name: str = "main"):
    scripts = {("personal", k): v for k, v in (personal or {}).items()}
    scripts.update({("global", k): v for k, v in (global_ or {}).items()})
    host = MailboxList(frozenset(), lambda n, loc: scripts.get((loc, n)))
    return evaluate(compile_script(script, limits=limits), parse_message(MESSAGE),
                    Envelope("alice@example.org", "bob@example.com"),
                    Environment(script_name=name), host, limits=limits)


def stores(*args, **kwargs) -> list[tuple[str, list[str]]]:
    result = run(*args, **kwargs)
    assert not result.errors, result.errors
    return sorted((a["mailbox"], a["flags"]) for a in result_json(result)["actions"]
                  if a["action"] == "store")


def test_variables_are_local_unless_global_and_flags_are_shared() -> None:
    main = REQ + ('global "g";\nset "g" "one";\nset "l" "loc";\ninclude "inc1";\n'
                  'fileinto "after-${g}-${l}";')
    inc1 = REQ + ('global "g";\naddflag "\\\\Seen";\nfileinto "in-${g}-${l}";\n'
                  'set "g" "two";\nset "l" "inner";\nreturn;\nfileinto "never";')
    assert stores(main, {"inc1": inc1}) == [("after-two-loc", ["\\seen"]),
                                            ("in-one-", ["\\seen"])]


def test_global_namespace_needs_no_declaration() -> None:
    main = REQ + 'set "global.y" "Y";\ninclude "inc";\nfileinto "v-${global.y}";'
    inc = REQ + 'global "y";\nfileinto "i-${y}";\nset "y" "Z";'
    assert stores(main, {"inc": inc}) == [("i-Y", []), ("v-Z", [])]


def test_global_scope_and_once() -> None:
    main = REQ + 'include :global "g1";\ninclude :once "o";\ninclude :once "o";'
    out = stores(main, {"o": 'require "fileinto"; fileinto "O";'},
                 {"g1": 'require "fileinto"; fileinto "G";'})
    assert out == [("G", []), ("O", [])]


def test_optional_missing_script_is_skipped() -> None:
    assert stores(REQ + 'include :optional "missing";\nfileinto "x";') == [("x", [])]


def test_return_in_the_main_script_acts_like_stop() -> None:
    assert stores('require "include";\nreturn;\ndiscard;') == [("INBOX", [])]


def test_stop_in_an_included_script_ends_everything() -> None:
    assert stores(REQ + 'include "s";\nfileinto "after";',
                  {"s": 'require "fileinto"; fileinto "S"; stop;'}) == [("S", [])]


@pytest.mark.parametrize(("main", "personal", "error"), [
    (REQ + 'include "missing"; fileinto "x";', {}, "does not exist"),
    (REQ + 'include "a";', {"a": 'require "include"; include "b";',
                            "b": 'require "include"; include "a";'}, "circular"),
    (REQ + 'include "main";', {"main": "keep;"}, "circular"),
    (REQ + 'include "bad";', {"bad": "fileinto \"x\";"}, "does not compile"),
])
def test_runtime_errors_keep_implicitly(main: str, personal: dict[str, str],
                                        error: str) -> None:
    result = run(main, personal)
    assert error in result.errors[0]
    assert result_json(result)["actions"] == [{"action": "store", "mailbox": "INBOX",
                                              "flags": []}]


def test_once_breaks_a_cycle() -> None:
    personal = {"a": 'require ["include", "fileinto"]; include :once "b"; fileinto "A";',
                "b": 'require ["include", "fileinto"]; include :once "a"; fileinto "B";'}
    assert stores(REQ + 'include "a";', personal) == [("A", []), ("B", [])]


def test_depth_limit_at_n_and_n_plus_one() -> None:
    chain = {f"s{i}": f'require "include"; include "s{i + 1}";' for i in range(3)}
    chain["s3"] = 'require "fileinto"; fileinto "deep";'
    assert stores('require "include"; include "s0";', chain,
                  limits=Limits(include_depth=4)) == [("deep", [])]
    result = run('require "include"; include "s0";', chain, limits=Limits(include_depth=3))
    assert "nested deeper than 3" in result.errors[0]


def test_count_limit_at_n_and_n_plus_one() -> None:
    script = 'require "include";\n' + 'include "x";\n' * 3
    personal = {"x": "keep;"}
    assert not run(script, personal, limits=Limits(max_includes=3)).errors
    assert "more than 2 includes" in run(script, personal,
                                         limits=Limits(max_includes=2)).errors[0]


@pytest.mark.parametrize("script", [
    'require ["include", "variables"]; set "a" "x"; include "${a}";',
    'require "include"; include "sub/x";',
    'require "include"; include "";',
    'require "include"; include :personal :global "x";',
    'require "include"; global "x";',                        # needs variables
    'require ["include", "variables"]; global "a.b";',
    'require "fileinto"; include "x";',                       # include not required
])
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveCompileError):
        compile_script(script)


def test_cli_personal_dir_and_global_dir(mda, mda_env, tmp_path) -> None:
    personal, scripts = tmp_path / "personal", tmp_path / "sieve_scripts"
    personal.mkdir()
    (scripts / "global").mkdir(parents=True)
    (personal / "main.sieve").write_text('require "include";\ninclude "p";\n'
                                         'include :global "g";\n')
    (personal / "p.sieve").write_text('require "fileinto"; fileinto "P";\n')
    (scripts / "global" / "g.sieve").write_text('require "fileinto"; fileinto "G";\n')
    (tmp_path / "m.eml").write_bytes(MESSAGE)
    proc = mda("sieve", "test", str(personal / "main.sieve"), str(tmp_path / "m.eml"),
               "--json", env={**mda_env, "MDA_SIEVE_SCRIPTS_DIR": str(scripts)}, check=True)
    report = json.loads(proc.stdout)
    assert sorted(a["mailbox"] for a in report["actions"]) == ["G", "P"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "p.sieve").write_text('require "fileinto"; fileinto "Other";\n')
    proc = mda("sieve", "test", str(personal / "main.sieve"), str(tmp_path / "m.eml"),
               "--json", "--personal-dir", str(other),
               env={**mda_env, "MDA_SIEVE_SCRIPTS_DIR": str(scripts)}, check=True)
    assert sorted(a["mailbox"] for a in json.loads(proc.stdout)["actions"]) == ["G", "Other"]
