"""Fixtures shared by every test area.

- `sqlite_url`: a fresh SQLite database file in the test's temp dir (a real file, not :memory:).
- `mda_env`: the environment for a real `mda` subprocess pointed at that database.
- `mda`: run the real `mda` command line and return the CompletedProcess.
- `require_tool`: skip when a Debian tool is missing, but fail under CI=true, where
  `.ci/run` must have installed it.
- `pg_url`: a fresh PostgreSQL database (created and dropped per test; skipped when no
  server is reachable).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "tests" / "sieve" / "conformance"
MDA_BIN = str(Path(sys.executable).with_name("mda"))
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a new, empty SQLite file in the temp dir."""
    return f"sqlite+aiosqlite:///{tmp_path / 'mda.sqlite3'}"


@pytest.fixture
def mda_env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a real `mda` process: its own database and no inherited MDA_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDA_")}
    env["MDA_DATABASE_URL"] = sqlite_url
    env["MDA_SIEVE_SCRIPTS_DIR"] = str(tmp_path / "sieve_scripts")
    return env


@pytest.fixture
def mda(mda_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """Run `mda ARGS...` as a real subprocess; returns the CompletedProcess (bytes output).

    Keyword `input` (bytes) feeds stdin; `check=True` asserts exit status 0.
    """

    def run(*args: str, input: bytes | None = None, check: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([MDA_BIN, *args], input=input, capture_output=True,
                              env=env or mda_env, timeout=120)
        if check:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    return run


@pytest.fixture
def require_tool() -> Callable[[str], str]:
    """Return the path of a program; skip if missing (fail under CI=true)."""

    def need(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            if IN_CI:
                pytest.fail(f"{name} is not installed; .ci/run should have installed it")
            pytest.skip(f"{name} is not installed")
        return path

    return need


PG_ADMIN_DSN = os.environ.get("MDA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


async def pg_admin(sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE ...) as the administrator of
    MDA_TEST_PG_DSN."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test.

    Uses the server named by MDA_TEST_PG_DSN (default: local trust-auth `postgres`); skips
    when it is unreachable, except under CI=true with MDA_TEST_PG_DSN set. A sync fixture
    (it runs its own short event loops), so async fixtures can depend on it.
    """
    import asyncio
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"mda_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        if IN_CI and "MDA_TEST_PG_DSN" in os.environ:
            pytest.fail(f"PostgreSQL at MDA_TEST_PG_DSN is unreachable: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    try:
        yield make_url(PG_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name) \
            .render_as_string(hide_password=False)
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
