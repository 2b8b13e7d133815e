"""mda's wheel, built and installed as the Dockerfile's builder stage does, migrates a database.

The wheel is built by pip (`pip wheel --no-deps`, the build backend pyproject.toml names)
from a copy of exactly what the Dockerfile copies into its build context, so a file the
package needs but the wheel leaves out (an alembic revision, env.py, the revision template)
shows up here. It is installed with `pip install --no-deps --target DIR`: the dependencies
come from the test venv, but `mda` itself only from DIR (PYTHONPATH puts DIR before the
venv's editable install), and every command runs from a directory outside the checkout.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import inspect

from mda.store.engine import create_engine
from mda.store.migrate import MIGRATIONS_DIR, head_revision
from tests.conftest import ROOT

TABLES = {"users", "mailboxes", "message_blobs", "messages", "sieve_scripts", "sieve_errors",
          "sieve_duplicates", "alembic_version"}


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mda's wheel, built from a copy of pyproject.toml, README.md and mda/ (the Dockerfile's
    build context), so that the checkout itself gets no build/ or egg-info of the test's."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "mda", source / "mda",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path_factory.mktemp("wheels")
    _pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(source), cwd=wheels)
    (built,) = wheels.glob("mda-*.whl")
    return built


def test_the_wheel_carries_every_revision_and_the_alembic_environment(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {f"mda/migrations/versions/{path.name}"
                 for path in (MIGRATIONS_DIR / "versions").glob("*.py")}
    assert len(revisions) >= 3
    assert revisions <= names, sorted(revisions - names)
    assert {"mda/migrations/env.py", "mda/migrations/script.py.mako"} <= names


async def _schema(url: str) -> tuple[set[str], list[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            def look(sync_conn) -> tuple[set[str], list[str]]:
                tables = set(inspect(sync_conn).get_table_names())
                rows = sync_conn.exec_driver_sql("SELECT version_num FROM alembic_version")
                return tables, [row[0] for row in rows]
            return await conn.run_sync(look)
    finally:
        await engine.dispose()


def test_the_installed_wheel_upgrades_a_fresh_database_from_anywhere(
        wheel: Path, database_url: str, mda_env: dict[str, str], tmp_path: Path) -> None:
    """`mda db upgrade` of the installed wheel, run from a directory with no migrations (nor
    alembic.ini) in sight, brings a fresh database (a new SQLite file in the default run) to
    the newest revision of the checkout."""
    target = tmp_path / "site"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel),
         cwd=elsewhere)
    env = {**mda_env, "PYTHONPATH": str(target)}

    where = subprocess.run([sys.executable, "-c", "import mda.store.migrate as m; "
                            "print(m.__file__); print(m.MIGRATIONS_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    module, migrations = where.stdout.split()
    assert Path(module).is_relative_to(target) and Path(migrations).is_relative_to(target)

    proc = subprocess.run([str(target / "bin" / "mda"), "db", "upgrade"], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"is at revision {head_revision()}")

    tables, versions = asyncio.run(_schema(database_url))
    assert TABLES <= tables, sorted(TABLES - tables)
    assert versions == [head_revision()]
