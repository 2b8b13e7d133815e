"""mda/sieve is sans-IO: it imports no event loop, socket, database or clock module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mda.sieve

SIEVE_DIR = Path(mda.sieve.__file__).resolve().parent
FORBIDDEN = {"asyncio", "socket", "ssl", "selectors", "sqlalchemy", "aiosqlite", "asyncpg",
             "aiosmtpd", "aiosmtplib", "time", "subprocess", "http", "urllib.request",
             "multiprocessing", "mda.store", "mda.delivery", "mda.lmtp", "mda.config",
             "mda.cli"}
CLOCK_CALLS = ("datetime.now", "datetime.utcnow", "date.today", "time.time", ".now(")
FILES = sorted(SIEVE_DIR.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SIEVE_DIR)) for p in FILES])
def test_no_io_imports(path: Path) -> None:
    for name in _imports(path):
        for bad in FORBIDDEN:
            assert name != bad and not name.startswith(bad + "."), f"{path} imports {name}"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SIEVE_DIR)) for p in FILES])
def test_no_clock_reads(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for call in CLOCK_CALLS:
        assert call not in text, f"{path} reads the clock ({call})"


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom sqlalchemy import select\n")
    assert {"asyncio", "sqlalchemy"} <= _imports(bad)
