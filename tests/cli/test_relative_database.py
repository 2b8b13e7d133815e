"""A relative SQLite path (the default `var/mda.sqlite3`) is looked for under the current
directory; when the file is missing the error says where it looked and what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import assert_one_line_error
from tests.conftest import MDA_BIN

pytestmark = pytest.mark.sqlite_only


def _run(cwd: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([MDA_BIN, *argv], cwd=cwd, env=env, capture_output=True, timeout=120)


def test_missing_default_database_shows_absolute_path(mda_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    env = {k: v for k, v in mda_env.items() if k != "MDA_DATABASE_URL"}
    where = (tmp_path / "var" / "mda.sqlite3").resolve()
    err = assert_one_line_error(_run(tmp_path, env, "user", "list"), str(where),
                                "current directory", "absolute", "mda db upgrade",
                                f"MDA_DATABASE_URL=sqlite+aiosqlite:///{where}")
    assert not where.exists(), err


def test_relative_database_url_is_explained_and_upgrade_names_the_file(
        mda_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(mda_env, MDA_DATABASE_URL="sqlite+aiosqlite:///data/mail.db")
    (tmp_path / "data").mkdir()
    where = (tmp_path / "data" / "mail.db").resolve()
    assert_one_line_error(_run(tmp_path, env, "user", "add", "joe@example.org"), str(where),
                          "relative path data/mail.db", "current directory")
    upgrade = _run(tmp_path, env, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"database {where} is at revision".encode() in upgrade.stdout
    assert _run(tmp_path, env, "user", "add", "joe@example.org").returncode == 0
    # From another directory the same relative URL names another (missing) file.
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert_one_line_error(_run(other, env, "user", "list"),
                          str((other / "data" / "mail.db").resolve()))
