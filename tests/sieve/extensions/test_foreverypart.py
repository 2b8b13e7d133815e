"""foreverypart and break (RFC 5703 §3). Expected values were checked against sieve-test."""

from __future__ import annotations

import pytest

from mda.sieve import Limits, SieveCompileError, compile_script
from tests.sieve.extensions.mime_messages import NESTED, NESTED_TYPES, PLAIN
from tests.sieve.helpers import run, stores

REQ = 'require ["foreverypart", "mime", "variables", "fileinto"];\n'


def _visits(script: str, message: bytes) -> str:
    folders = [s for s in stores(script, message) if s.startswith("v-")]
    assert len(folders) == 1
    return folders[0][2:]


def test_visits_every_part_top_level_first() -> None:
    script = REQ + ('set "seen" "";\nforeverypart {\n'
                    '  if header :mime :contenttype :matches "content-type" "*" {\n'
                    '    set "seen" "${seen}|${1}"; }\n}\nfileinto "v-${seen}";')
    assert _visits(script, NESTED).split("|")[1:] == NESTED_TYPES


def test_single_part_message_is_visited_once() -> None:
    script = REQ + 'set "n" ""; foreverypart { set "n" "${n}x"; } fileinto "v-${n}";'
    assert _visits(script, PLAIN) == "x"


def test_nested_loop_visits_the_parts_below_the_outer_part() -> None:
    script = REQ + ('set "n" "";\nforeverypart {\n'
                    '  if header :mime :type "content-type" "message" {\n'
                    '    foreverypart { set "n" "${n}x"; }\n  }\n}\nfileinto "v-${n}";')
    assert _visits(script, NESTED) == "xxx"  # multipart/alternative, text/plain, text/html


def test_break_leaves_the_innermost_loop() -> None:
    script = REQ + ('set "n" "";\nforeverypart {\n  set "n" "${n}o";\n'
                    '  foreverypart { set "n" "${n}i"; break; }\n}\nfileinto "v-${n}";')
    # the inner loop runs once per outer part that has parts below it
    assert _visits(script, NESTED) == "oiooioiooo"


def test_break_by_name_leaves_the_named_outer_loop() -> None:
    script = REQ + ('set "n" "";\nforeverypart :name "outer" {\n  set "n" "${n}o";\n'
                    '  foreverypart { set "n" "${n}i"; break :name "outer"; }\n}\n'
                    'fileinto "v-${n}";')
    assert _visits(script, NESTED) == "oi"


def test_actions_before_break_stay() -> None:
    script = REQ + ('foreverypart :name "scan" {\n'
                    '  if header :mime :type "content-type" "application" {\n'
                    '    fileinto "FoundApp"; break :name "scan"; }\n'
                    '  fileinto "Visited";\n}')
    assert stores(script, NESTED) == ["FoundApp", "Visited"]


@pytest.mark.parametrize("script", [
    "break;",
    'foreverypart { break :name "nope"; }',
    'foreverypart :name "a" { } foreverypart { break :name "a"; }',
    "foreverypart;",
    "foreverypart { foreverypart { foreverypart { foreverypart { foreverypart { } } } } }",
])
def test_compile_errors(script: str) -> None:
    with pytest.raises(SieveCompileError):
        compile_script(REQ + script)


def test_four_nested_loops_compile() -> None:
    compile_script(REQ + "foreverypart { foreverypart { foreverypart { foreverypart { } } } }")


def test_each_visit_counts_against_the_step_limit() -> None:
    script = REQ + 'foreverypart { set "a" "b"; }'
    # 7 visits + 7 sets + the loop itself: 15 steps
    assert not run(script, NESTED, limits=Limits(max_steps=15)).errors
    assert run(script, NESTED, limits=Limits(max_steps=14)).errors
