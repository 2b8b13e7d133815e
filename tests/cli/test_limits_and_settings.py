"""Operator mistakes in quota limits and in the MDA_CONFIG TOML file are one error line,
from every command, and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Run, as_json, assert_one_line_error

TOO_BIG = [
    ("user", "add", "big@example.org", "--quota-storage", "99999999999999999999999999G"),
    ("user", "add", "big@example.org", "--quota-storage", str(2**63)),
    ("user", "add", "big@example.org", "--quota-messages", "99999999999999999999999"),
    ("user", "set-quota", "dup@example.com", "--storage", "9999999999999999999999"),
    ("user", "set-quota", "dup@example.com", "--messages", str(2**63)),
]


@pytest.mark.parametrize("argv", TOO_BIG, ids=[" ".join(a[1:]) for a in TOO_BIG])
def test_limits_beyond_64_bits_are_refused(cli: Run, argv: tuple[str, ...]) -> None:
    cli("user", "add", "dup@example.com", check=True)
    assert_one_line_error(cli(*argv), "too large", str(2**63 - 1))
    assert as_json(cli("user", "list", "--json")) == [
        {"address": "dup@example.com", "password_set": False, "storage_used": 0,
         "storage_limit": None, "messages_used": 0, "messages_limit": None}]


def test_the_largest_limit_is_accepted(cli: Run) -> None:
    top = str(2**63 - 1)
    cli("user", "add", "big@example.org", "--quota-storage", top, "--quota-messages", top,
        check=True)
    usage = as_json(cli("quota", "show", "big@example.org", "--json"))
    assert usage["storage_limit"] == usage["messages_limit"] == 2**63 - 1


EVERY_COMMAND = [("user", "list"), ("db", "upgrade"), ("sieve", "check", "-"),
                 ("sieve", "test", "-", "-"), ("sieve", "list", "joe@example.com")]


def _with_config(mda_env: dict[str, str], path: Path, text: str) -> dict[str, str]:
    path.write_text(text)
    return dict(mda_env, MDA_CONFIG=str(path))


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
def test_malformed_toml_is_one_line_from_every_command(
        mda: Run, mda_env: dict[str, str], tmp_path: Path, argv: tuple[str, ...]) -> None:
    env = _with_config(mda_env, tmp_path / "bad.toml", 'hostname = "unterminated\n')
    assert_one_line_error(mda(*argv, env=env, input=b""), "bad.toml", "not valid TOML",
                          "line 1")


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
def test_missing_toml_file_is_one_line(mda: Run, mda_env: dict[str, str], tmp_path: Path,
                                       argv: tuple[str, ...]) -> None:
    env = dict(mda_env, MDA_CONFIG=str(tmp_path / "absent.toml"))
    assert_one_line_error(mda(*argv, env=env, input=b""), "absent.toml", "cannot read")


def test_type_error_names_the_toml_key_and_file(mda: Run, mda_env: dict[str, str],
                                                tmp_path: Path) -> None:
    env = _with_config(mda_env, tmp_path / "mda.toml",
                       'max_message_size = "lots"\nhostname = "mx.example.org"\n')
    err = assert_one_line_error(mda("user", "list", env=env),
                                "max_message_size in ", "mda.toml", "not a size")
    assert "MDA_MAX_MESSAGE_SIZE" not in err
    err = assert_one_line_error(mda("sieve", "check", "-", env=env, input=b"keep;"),
                                "max_message_size in ")
    # The environment wins over the file, so a bad variable is named as the variable.
    env["MDA_MAX_MESSAGE_SIZE"] = "huge"
    assert_one_line_error(mda("user", "list", env=env), "MDA_MAX_MESSAGE_SIZE", "'huge'")


def test_unknown_toml_key_is_named(mda: Run, mda_env: dict[str, str], tmp_path: Path) -> None:
    env = _with_config(mda_env, tmp_path / "mda.toml",
                       'lmtp_lisen = "127.0.0.1:24"\nhostname = "mx.example.org"\n')
    for argv in EVERY_COMMAND:
        assert_one_line_error(mda(*argv, env=env, input=b""), "'lmtp_lisen'", "mda.toml")


def test_a_good_toml_file_is_used(mda: Run, mda_env: dict[str, str], tmp_path: Path) -> None:
    env = _with_config(mda_env, tmp_path / "mda.toml", 'SIEVE_MAX_SCRIPT_SIZE = "1K"\n')
    assert mda("sieve", "check", "-", env=env, input=b"keep;").returncode == 0
    proc = mda("sieve", "check", "-", env=env, input=b"keep;" + b"#" * 1100)
    assert_one_line_error(proc)


def test_unknown_mda_variable_is_refused_with_the_likely_name(
        mda: Run, mda_env: dict[str, str], tmp_path: Path) -> None:
    """A misspelt variable would otherwise leave mda on the default SQLite file, accepting
    mail nobody reads."""
    env = dict(mda_env, MDA_DATABSE_URL=mda_env["MDA_DATABASE_URL"])
    for argv in (*EVERY_COMMAND, ("serve", "--listen", "127.0.0.1:0")):
        assert_one_line_error(mda(*argv, env=env, input=b""),
                              "unknown environment variable MDA_DATABSE_URL",
                              "did you mean MDA_DATABASE_URL?")
    assert not (tmp_path / "var").exists()
    env = dict(mda_env, MDA_NOTHING_LIKE_IT="1")
    err = assert_one_line_error(mda("user", "list", env=env), "MDA_NOTHING_LIKE_IT")
    assert "did you mean" not in err


def test_variables_of_mda_tooling_are_not_settings_and_allowed(
        mda: Run, mda_env: dict[str, str]) -> None:
    env = dict(mda_env, MDA_TEST_BACKEND="sqlite", MDA_TEST_ANYTHING="x",
               MDA_DIFFERENTIAL_EXAMPLES="5", MDA_DB_PASSWORD="compose's")
    assert mda("sieve", "check", "-", env=env, input=b"keep;").returncode == 0
