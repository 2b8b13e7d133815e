"""Fixtures shared by every test area, and the database backend under test.

`MDA_TEST_BACKEND` names the backend a run tests, `sqlite` or `postgresql`;
`python3 run.py test` runs the suite once with each. Tests get their database from
`database_url` and so run on either; the few that are about one backend itself say so:

- `@pytest.mark.sqlite_only` (file paths, WAL, a deleted or locked file, ...): skipped in the
  PostgreSQL run. A test using the `sqlite_url` fixture is marked so automatically.
- `@pytest.mark.postgresql_only` (Postfix's pgsql map, the Compose topology): skipped in the
  SQLite run. A test using the `pg_url` fixture is marked so automatically.
- A test parametrized with the values `"sqlite"` and `"postgresql"` (a fixture with
  `params=["sqlite", "postgresql"]`) runs only the parameter of the backend under test; the
  other one runs in the other backend's run.
- A test that reaches no database (uses none of `DATABASE_FIXTURES`) runs alike on both: the
  PostgreSQL run deselects it, the SQLite run has it.

Without MDA_TEST_BACKEND (a plain `pytest`), `database_url` is SQLite and every test runs,
whichever backend it is for: each test once, PostgreSQL only where a test asks for it.

Fixtures:
- `database_url`: a fresh, empty database of the backend under test (of the marked one for a
  `..._only` test): a SQLite file in the test's temp dir, or a PostgreSQL database created
  for the test and dropped after it.
- `module_database_url`: the same, shared by a module's tests.
- `sqlite_url`, `pg_url`: a fresh SQLite file / PostgreSQL database, whatever the backend.
- `missing_database_url`: a URL of the backend under test naming a database that does not
  exist (a SQLite file never created, a PostgreSQL database never created).
- `mda_env`: the environment for a real `mda` subprocess pointed at `database_url`.
- `mda`: run the real `mda` command line and return the CompletedProcess.
- `require_tool`: skip when a Debian tool is missing, but fail under CI=true, where
  `.ci/run` must have installed it.

Helpers: `fresh_database(directory)` gives a database outside function-scoped fixtures (a
module's shared server), `database_template` and `clone_database` copy a prepared one, and
`database_away(url)` makes a database unreachable for a while.

PostgreSQL is the server named by MDA_TEST_PG_DSN (default: the local trust-auth `postgres`
user, database `test`); each test database is named `mda_test_<random>` and dropped with
`WITH (FORCE)`, so nothing else on that server is touched. When the server is unreachable a
test needing it is skipped, but fails in the PostgreSQL run and under CI=true with
MDA_TEST_PG_DSN set.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "tests" / "sieve" / "conformance"
MDA_BIN = str(Path(sys.executable).with_name("mda"))
IN_CI = os.environ.get("CI", "").lower() == "true"

BACKENDS = ("sqlite", "postgresql")
CHOSEN_BACKEND = os.environ.get("MDA_TEST_BACKEND", "").strip().lower()
BACKEND = CHOSEN_BACKEND or "sqlite"
PG_ADMIN_DSN = os.environ.get("MDA_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_ONLY = {"sqlite": "sqlite_only", "postgresql": "postgresql_only"}
# The fixtures through which a test reaches a database: a test using none of them (and not
# parametrized by backend) runs alike on both, so the PostgreSQL run leaves it to the SQLite
# run.
DATABASE_FIXTURES = frozenset({"database_url", "module_database_url", "missing_database_url",
                               "sqlite_url", "pg_url"})
_DESELECTED = pytest.StashKey[dict[str, int]]()
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    if BACKEND not in BACKENDS:
        raise pytest.UsageError(f"MDA_TEST_BACKEND={BACKEND!r}: use one of {', '.join(BACKENDS)}")


def _describe_backend() -> str:
    if CHOSEN_BACKEND:
        return f"mda database backend: {BACKEND} (MDA_TEST_BACKEND={BACKEND})"
    return "mda database backend: sqlite, and postgresql where a test asks for it " \
        "(MDA_TEST_BACKEND unset)"


def pytest_report_header(config: pytest.Config) -> str:
    return _describe_backend()


def _backend_param(item: pytest.Item) -> str | None:
    """The backend a test is parametrized for (`[sqlite]`, `[postgresql]`), if any."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    found = {value for value in callspec.params.values()
             if isinstance(value, str) and value in BACKENDS}
    return found.pop() if len(found) == 1 else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests using `sqlite_url`/`pg_url` as for that backend only. With MDA_TEST_BACKEND
    set, keep the tests of that backend: deselect the other backend's parameter of
    backend-parametrized tests and skip tests marked for the other backend only; the
    PostgreSQL run also deselects the tests that use no database."""
    kept: list[pytest.Item] = []
    deselected: dict[str, list[pytest.Item]] = {"other_param": [], "no_database": []}
    for item in items:
        param = _backend_param(item)
        if param is not None:
            keep = param == BACKEND or not CHOSEN_BACKEND
            (kept if keep else deselected["other_param"]).append(item)
            continue
        names = set(getattr(item, "fixturenames", ()))
        if "sqlite_url" in names:
            item.add_marker(pytest.mark.sqlite_only)
        if "pg_url" in names:
            item.add_marker(pytest.mark.postgresql_only)
        other = [(backend, marker) for backend, marker in _ONLY.items()
                 if CHOSEN_BACKEND and backend != BACKEND and item.get_closest_marker(marker)]
        for backend, marker in other:
            item.add_marker(pytest.mark.skip(
                reason=f"{marker}: runs in the {backend} run (MDA_TEST_BACKEND={backend})"))
        if not other and CHOSEN_BACKEND == "postgresql" and not names & DATABASE_FIXTURES:
            deselected["no_database"].append(item)
            continue
        kept.append(item)
    if kept != items:
        config.hook.pytest_deselected(items=[i for group in deselected.values() for i in group])
        items[:] = kept
    counts = {reason: len(group) for reason, group in deselected.items()}
    config.stash[_DESELECTED] = counts
    if hasattr(config, "workeroutput"):  # a pytest-xdist worker: tell the controller
        config.workeroutput["mda_deselected"] = counts


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist controller: keep a worker's deselection counts (every worker's are the
    same) for the closing summary."""
    counts = getattr(node, "workeroutput", {}).get("mda_deselected")
    if counts is not None:
        node.config.stash[_DESELECTED] = counts  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    """Name the backend in the closing lines, so a failure says which run it was, and count
    what this run left to the other one."""
    if config.option.collectonly:
        return
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if isinstance(report.longrepr, tuple)
               and any(marker in report.longrepr[2] for marker in _ONLY.values())]
    counts = config.stash.get(_DESELECTED, {})
    parts = [f"{len(skipped)} skipped as for the other backend only"]
    if counts.get("other_param"):
        parts.append(f"{counts['other_param']} deselected as the other backend's parameter")
    if counts.get("no_database"):
        parts.append(f"{counts['no_database']} using no database deselected "
                     "(they run in the sqlite run)")
    terminalreporter.write_line(f"{_describe_backend()}: {'; '.join(parts)}")


# ---------------------------------------------------------------- PostgreSQL


def run_async(coroutine: Coroutine[object, object, T]) -> T:
    """Run a coroutine to completion on its own event loop in a helper thread, so that
    sync code called from an async test (whose loop is running) can use asyncpg too."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def pg_admin(sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE ...) as the administrator of
    MDA_TEST_PG_DSN."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_url(name: str) -> str:
    """The SQLAlchemy asyncpg URL of database `name` on the MDA_TEST_PG_DSN server."""
    from sqlalchemy.engine import make_url

    return make_url(PG_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=name) \
        .render_as_string(hide_password=False)


def _pg_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    assert name, url
    return name


def _pg_unreachable(exc: BaseException) -> None:
    """Skip the test (fail it where PostgreSQL is required) for an unreachable server."""
    if BACKEND == "postgresql" or (IN_CI and "MDA_TEST_PG_DSN" in os.environ):
        pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable: {exc}")
    pytest.skip(f"PostgreSQL is not reachable: {exc}")


@contextmanager
def pg_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (empty, or a copy of database `template`); yields its
    SQLAlchemy URL and drops it, with any connection still open to it, on exit."""
    import asyncpg

    name = f"mda_test_{uuid.uuid4().hex[:12]}"
    create = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
    try:
        run_async(pg_admin(create))
    except (OSError, asyncpg.PostgresError) as exc:
        _pg_unreachable(exc)
    try:
        yield _pg_url(name)
    finally:
        run_async(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test.

    A sync fixture (it runs its own short event loops), so async fixtures can depend on it.
    """
    with pg_database() as url:
        yield url


# ---------------------------------------------------------------- either backend


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a new, empty SQLite file in the temp dir."""
    return f"sqlite+aiosqlite:///{tmp_path / 'mda.sqlite3'}"


@contextmanager
def fresh_database(directory: Path) -> Iterator[str]:
    """A new, empty database of the backend under test: `directory/mda.sqlite3` (not yet
    created), or a PostgreSQL database dropped on exit. Yields its SQLAlchemy URL."""
    if BACKEND == "postgresql":
        with pg_database() as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{directory / 'mda.sqlite3'}"


@contextmanager
def database_template(directory: Path, prepare: Callable[[str], None]) -> Iterator[str]:
    """A database of the backend under test made once by `prepare(url)` (e.g. `mda db
    upgrade`), to be copied by `clone_database`; yields its URL, dropped on exit."""
    with fresh_database(directory) as url:
        prepare(url)
        yield url


def clone_database(template: str, target: str) -> None:
    """Make database `target` (a `database_url`) an exact copy of database `template`.

    SQLite copies the file; PostgreSQL re-creates `target` with `TEMPLATE`, which needs no
    open connection to `template`.
    """
    if template.startswith("sqlite"):
        shutil.copyfile(template.split("///", 1)[1], target.split("///", 1)[1])
        return
    source, name = _pg_name(template), _pg_name(target)

    async def recreate() -> None:
        await pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')
        await pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')

    run_async(recreate())


@contextmanager
def database_away(url: str) -> Iterator[None]:
    """Make the database `url` unreachable inside the block, and whole again after it.

    SQLite: the file (with its -wal and -shm) is renamed aside. PostgreSQL: every connection
    to the database is terminated and the database renamed, so new connections fail with
    "database does not exist" as after a DROP; it gets its name back on exit.
    """
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        moved = [Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")
                 if Path(f"{path}{suffix}").exists()]
        for each in moved:
            each.rename(f"{each}.away")
        try:
            yield
        finally:
            for each in moved:
                Path(f"{each}.away").rename(each)
        return
    import asyncpg

    name = _pg_name(url)
    away = f"{name}_away"

    async def rename(old: str, new: str, terminate: bool) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            for _ in range(50):  # a pool may reconnect between the two statements
                if terminate:
                    await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                       " WHERE datname = $1", old)
                try:
                    await conn.execute(f'ALTER DATABASE "{old}" RENAME TO "{new}"')
                    return
                except asyncpg.ObjectInUseError:
                    await asyncio.sleep(0.1)
            raise AssertionError(f"database {old} stayed in use")
        finally:
            await conn.close()

    run_async(rename(name, away, terminate=True))
    try:
        yield
    finally:
        run_async(rename(away, name, terminate=False))


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """SQLAlchemy URL of a new, empty database of the backend under test (MDA_TEST_BACKEND;
    for a test marked `sqlite_only` or `postgresql_only`, of that backend): a SQLite file in
    the temp dir, or a PostgreSQL database dropped after the test."""
    backend = BACKEND
    for name, marker in _ONLY.items():
        if request.node.get_closest_marker(marker) is not None:
            backend = name
    return request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url")


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Like `database_url`, but one database for a whole module (e.g. for a server that the
    module's tests share)."""
    with fresh_database(tmp_path_factory.mktemp("database")) as url:
        yield url


@pytest.fixture
def missing_database_url(tmp_path: Path) -> str:
    """A URL of the backend under test whose database does not exist (and is never
    created by the test run): a SQLite file path, or a PostgreSQL database name."""
    if BACKEND == "postgresql":
        return _pg_url(f"mda_test_missing_{uuid.uuid4().hex[:12]}")
    return f"sqlite+aiosqlite:///{tmp_path / 'missing.sqlite3'}"


@pytest.fixture
def mda_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a real `mda` process: its own database and no inherited MDA_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDA_")}
    env["MDA_DATABASE_URL"] = database_url
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
