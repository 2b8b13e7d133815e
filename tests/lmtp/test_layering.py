"""Layer rules for `mda/lmtp/` (DESIGN.md, STYLE.md point 10): protocol glue never talks
SQL, and every reply it writes comes from `mda.replies`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

LMTP_DIR = Path(__file__).resolve().parents[2] / "mda" / "lmtp"
SOURCES = sorted(LMTP_DIR.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_sqlalchemy_or_store_imports(path: Path) -> None:
    bad = {name for name in imported_modules(path)
           if name.split(".")[0] == "sqlalchemy" or name.startswith("mda.store")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_hand_written_final_replies(path: Path) -> None:
    """Replies with an enhanced code are built in mda.replies, not typed in here."""
    literal = re.compile(r"[\"'][245]\d\d [245]\.\d+\.\d+")
    assert not literal.findall(path.read_text()), path.name
