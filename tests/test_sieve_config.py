"""mda.sieve_config: Settings → the engine's Limits and Environment, and the CLI using them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mda.config import Settings
from mda.sieve import Limits
from mda.sieve_config import header_names, sieve_environment, sieve_limits

Run = Callable[..., subprocess.CompletedProcess[bytes]]
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MESSAGE = b"From: ann@example.org\r\nTo: joe@example.com\r\nSubject: hi\r\n\r\nHello\r\n"
THREE_FILEINTOS = 'require "fileinto";\nfileinto "a";\nfileinto "b";\nfileinto "c";\n'


def test_defaults_are_the_engines_defaults() -> None:
    assert sieve_limits(Settings()) == Limits()


def test_every_limit_setting_reaches_limits() -> None:
    settings = Settings(sieve_max_script_size="2K", sieve_max_actions=3, sieve_max_redirects=1,
                        sieve_max_include_depth=2, sieve_max_includes=5, sieve_max_nesting=7,
                        sieve_max_variable_size=99, sieve_regex_timeout=0.25,
                        sieve_max_steps=1234)
    assert sieve_limits(settings) == Limits(
        script_size=2048, max_actions=3, max_redirects=1, include_depth=2, max_includes=5,
        max_nesting=7, max_variable_size=99, regex_timeout=0.25, max_steps=1234)


def test_limit_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="sieve_max_actions"):
        Settings(sieve_max_actions=0)
    with pytest.raises(ValueError, match="sieve_regex_timeout"):
        Settings(sieve_regex_timeout=0)
    with pytest.raises(ValueError, match="not a size"):
        Settings(sieve_max_script_size="1X")


def test_environment_carries_every_setting() -> None:
    settings = Settings(hostname="mx.test", recipient_delimiter="+-",
                        spamtest_header="X-Spam-Score: score=([0-9.]+)", spamtest_max=5,
                        virustest_header="X-Virus", virustest_text_values="1=clean,5=infected",
                        sieve_duplicate_default_period=60, sieve_duplicate_max_period=600,
                        sieve_vacation_min_period=10, sieve_vacation_default_period=20,
                        sieve_vacation_max_period=30, sieve_editheader_max_header_size=100,
                        sieve_editheader_forbid_add="X-A, X-B,",
                        sieve_editheader_forbid_delete="X-C")
    env = sieve_environment(settings, now=NOW, remote_host="mta.example", remote_ip="192.0.2.1",
                            user_addresses=("joe@example.com",), script_name="main")
    assert (env.now, env.domain, env.host, env.remote_host, env.remote_ip) == \
        (NOW, "mx.test", "mx.test", "mta.example", "192.0.2.1")
    assert env.recipient_delimiter == "+-"
    assert (env.spamtest_header, env.spamtest_max) == ("X-Spam-Score: score=([0-9.]+)", 5)
    assert env.virustest_text_values == ((1, "clean"), (5, "infected"))
    assert (env.duplicate_default_seconds, env.duplicate_max_seconds) == (60, 600)
    assert (env.vacation_min_seconds, env.vacation_default_seconds,
            env.vacation_max_seconds) == (10, 20, 30)
    assert env.editheader_forbid_add == ("X-A", "X-B")
    assert env.editheader_forbid_delete == ("X-C",)
    assert env.editheader_max_header_size == 100
    assert (env.user_addresses, env.script_name) == (("joe@example.com",), "main")


def test_header_names() -> None:
    assert header_names("") == ()
    assert header_names(" X-One ,,X-Two ") == ("X-One", "X-Two")


def _write(tmp_path: Path, name: str, data: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def test_dry_run_uses_the_limit_settings(mda: Run, mda_env: dict[str, str],
                                         tmp_path: Path) -> None:
    script = _write(tmp_path, "three.sieve", THREE_FILEINTOS)
    message = _write(tmp_path, "m.eml", MESSAGE)
    fine = json.loads(mda("sieve", "test", script, message, "--json", check=True).stdout)
    assert len(fine["actions"]) == 3 and fine["errors"] == []
    env = dict(mda_env, MDA_SIEVE_MAX_ACTIONS="2")
    limited = json.loads(mda("sieve", "test", script, message, "--json", env=env).stdout)
    assert limited["errors"] == ["line 4: too many actions (limit 2)"]
    assert limited["actions"] == [{"action": "store", "mailbox": "INBOX", "flags": []}]


def test_check_and_put_use_the_script_size_setting(mda: Run, mda_env: dict[str, str],
                                                   tmp_path: Path) -> None:
    script = _write(tmp_path, "three.sieve", THREE_FILEINTOS)
    env = dict(mda_env, MDA_SIEVE_MAX_SCRIPT_SIZE="40")
    check = mda("sieve", "check", script, env=env)
    assert check.returncode != 0
    assert b"the limit is 40 bytes" in check.stderr
    mda("db", "upgrade", check=True)
    mda("user", "add", "joe@example.com", check=True)
    put = mda("sieve", "put", "joe@example.com", "big", script, env=env)
    assert put.returncode != 0 and b"the limit is 40 bytes" in put.stderr
    mda("sieve", "put", "joe@example.com", "big", script, check=True)


def test_the_dry_run_path_imports_no_database_code() -> None:
    """`mda sieve test` runs hundreds of times in the test suite: keep it light."""
    code = ("import sys, mda.sieve_config, mda.cli.dryrun\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'sqlalchemy', 'alembic', 'aiosqlite', 'asyncpg'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert out.stdout == b"[]\n"
