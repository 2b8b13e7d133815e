"""`mda sieve put|activate|deactivate|list|get|delete|errors` through the real `mda` command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mda.store import Store, get_user, record_sieve_error
from tests.cli.conftest import Run, as_json, assert_one_line_error

GOOD = 'require ["fileinto"];\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n'
BAD = 'require ["fileinto"];\nif true {\n  fileinto "X"\n}\n'


@pytest.fixture
def joe(cli: Run) -> str:
    cli("user", "add", "joe@example.com", check=True)
    return "joe@example.com"


def test_put_activate_get_list_delete(cli: Run, joe: str, tmp_path: Path) -> None:
    script = tmp_path / "main.sieve"
    script.write_bytes(GOOD.encode())
    assert b"(active)" in cli("sieve", "put", joe, "main", str(script), "--activate",
                              check=True).stdout
    cli("sieve", "put", joe, "spare", "-", input=b"keep;", check=True)
    assert as_json(cli("sieve", "list", joe, "--json")) == [
        {"name": "main", "active": True, "size": len(GOOD)},
        {"name": "spare", "active": False, "size": 5}]
    assert cli("sieve", "list", joe, check=True).stdout == b"main  (active)\nspare\n"
    assert cli("sieve", "get", joe, "main", check=True).stdout == GOOD.encode()

    assert_one_line_error(cli("sieve", "delete", joe, "main"), "active")
    cli("sieve", "activate", joe, "spare", check=True)
    cli("sieve", "delete", joe, "main", check=True)
    cli("sieve", "deactivate", joe, check=True)
    assert as_json(cli("sieve", "list", joe, "--json")) == [
        {"name": "spare", "active": False, "size": 5}]


def test_put_refuses_a_script_that_does_not_compile(cli: Run, joe: str,
                                                    tmp_path: Path) -> None:
    script = tmp_path / "bad.sieve"
    script.write_text(BAD)
    err = assert_one_line_error(cli("sieve", "put", joe, "bad", str(script), "--activate"),
                                "line 4, column 1")
    assert "bad.sieve" in err
    assert as_json(cli("sieve", "list", joe, "--json")) == []


def test_put_refuses_an_oversize_script_naming_size_and_limit(cli: Run, joe: str,
                                                              mda_env: dict[str, str]) -> None:
    env = dict(mda_env, MDA_SIEVE_MAX_SCRIPT_SIZE="1K")
    err = assert_one_line_error(cli("sieve", "put", joe, "big", "-", env=env,
                                    input=b"keep;" + b" " * 1020),
                                "-: script is too large: 1025 bytes; the limit is 1024 bytes")
    assert "line" not in err and "column" not in err
    assert as_json(cli("sieve", "list", joe, "--json")) == []


@pytest.mark.parametrize(("argv", "stdin", "needle"), [
    (("sieve", "put", "joe@example.com", "x", "missing-file"), None, "cannot read"),
    (("sieve", "put", "joe@example.com", "x", "-"), b"\xff\xfe", "not UTF-8"),
    (("sieve", "put", "joe@example.com", "x", "-"), b'require "nosuchext";', "line 1"),
    (("sieve", "put", "joe@example.com", "bad\x01name", "-"), b"keep;", "control character"),
    (("sieve", "put", "nobody@example.com", "x", "-"), b"keep;", "no user"),
    (("sieve", "activate", "joe@example.com", "nope"), None, "no Sieve script"),
    (("sieve", "get", "joe@example.com", "nope"), None, "no Sieve script"),
    (("sieve", "delete", "joe@example.com", "nope"), None, "no Sieve script"),
    (("sieve", "list", "nobody@example.com"), None, "no user"),
    (("sieve", "deactivate", "bad address"), None, "bad address"),
    (("sieve", "errors", "nobody@example.com"), None, "no user"),
    (("sieve", "put", "joe@example.com", "x"), None, "Missing argument"),
])
def test_bad_input_is_one_line(cli: Run, joe: str, argv: tuple[str, ...],
                               stdin: bytes | None, needle: str) -> None:
    assert_one_line_error(cli(*argv, input=stdin), needle)


def test_errors_lists_what_delivery_recorded(cli: Run, joe: str, database_url: str) -> None:
    async def record() -> None:
        async with Store(database_url) as store:
            async with store.transaction() as session:
                user = await get_user(session, joe)
                await record_sieve_error(session, user.id, kind="runtime", script_name="main",
                                         queue_id="Q1", message="redirect is not available")

    assert cli("sieve", "errors", joe, check=True).stdout == b""
    asyncio.run(record())
    [entry] = as_json(cli("sieve", "errors", joe, "--json"))
    assert (entry["kind"], entry["script"], entry["queue_id"], entry["message"]) == (
        "runtime", "main", "Q1", "redirect is not available")
    assert b"runtime 'main' [Q1]: redirect is not available" in cli(
        "sieve", "errors", joe, check=True).stdout
