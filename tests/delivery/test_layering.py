"""Layer rules of DESIGN.md: only mda/store knows SQL; the store never formats replies."""

from __future__ import annotations

from pathlib import Path

import pytest

import mda
from tests.lmtp.test_layering import imported_modules

PACKAGE = Path(mda.__file__).resolve().parent


def sources(*relative: str) -> list[Path]:
    found = []
    for rel in relative:
        target = PACKAGE / rel
        found.extend(sorted(target.rglob("*.py")) if target.is_dir() else [target])
    return found


@pytest.mark.parametrize("path", sources("delivery", "cli/admin.py", "cli/scripts.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_store_imports_sqlalchemy(path: Path) -> None:
    assert not {m for m in imported_modules(path) if m.split(".")[0] in {
        "sqlalchemy", "alembic", "aiosqlite", "asyncpg"}}


@pytest.mark.parametrize("path", sources("store"), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_store_never_formats_replies(path: Path) -> None:
    modules = imported_modules(path)
    assert "mda.replies" not in modules and not any(m.startswith("mda.delivery") for m in modules)
    assert not any(m.startswith(("mda.lmtp", "mda.cli", "mda.sieve")) for m in modules)
