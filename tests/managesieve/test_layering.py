"""Layer rules for `mda/managesieve/` (DESIGN.md, STYLE.md point 10): protocol glue never
talks SQL, and the parser and SASL modules stay sans-IO."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mda" / "managesieve"
SOURCES = sorted(PACKAGE.glob("*.py"))
SANS_IO = ("wire.py", "sasl.py", "throttle.py")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_sqlalchemy(path: Path) -> None:
    bad = {name for name in imported_modules(path) if name.split(".")[0] == "sqlalchemy"}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("name", SANS_IO)
def test_sans_io_modules_import_no_io(name: str) -> None:
    bad = {module for module in imported_modules(PACKAGE / name)
           if module.split(".")[0] in {"asyncio", "socket", "ssl", "selectors", "mda"}
           and module != "mda.managesieve.wire"}
    assert not bad, f"{name} imports {sorted(bad)}"
