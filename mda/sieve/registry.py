"""The table of everything the engine understands: core RFC 5228 plus the extensions.

Built once from `mda.sieve.core.CORE` and the explicit list in
`mda.sieve.extensions.EXTENSIONS`; `register()` hands the command names to sievelib once.
"""

from __future__ import annotations

import threading
from functools import cached_property

from mda.sieve import grammar
from mda.sieve.spec import CommandSpec, Extension, TagSpec

#: comparators every script may use without require (RFC 5228 §2.7.3)
BUILTIN_COMPARATORS = ("i;octet", "i;ascii-casemap")


class Registry:
    """Lookup tables over the core language and all extensions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registered = False

    @cached_property
    def extensions(self) -> tuple[Extension, ...]:
        """Core first, then every extension in `extensions.EXTENSIONS` order."""
        from mda.sieve.core import CORE
        from mda.sieve.extensions import EXTENSIONS

        return (CORE, *EXTENSIONS)

    @cached_property
    def commands(self) -> dict[str, CommandSpec]:
        """Command and test specs by name."""
        table: dict[str, CommandSpec] = {}
        for ext in self.extensions:
            for spec in ext.commands:
                table[spec.name] = spec
        return table

    @cached_property
    def _tags(self) -> dict[tuple[str, str], TagSpec]:
        table: dict[tuple[str, str], TagSpec] = {}
        for ext in self.extensions:
            for tag in ext.tags:
                for spec in self.commands.values():
                    if spec.name in tag.commands or (tag.group in spec.groups):
                        table.setdefault((spec.name, tag.name), tag)
        return table

    def tag_for(self, command: str, tag: str) -> TagSpec | None:
        """The tag `tag` as accepted by `command`, or None."""
        return self._tags.get((command, tag))

    @cached_property
    def comparators(self) -> dict[str, str | None]:
        """Comparator name → capability that must be required (None = built in)."""
        table: dict[str, str | None] = {name: None for name in BUILTIN_COMPARATORS}
        for ext in self.extensions:
            for name in ext.comparators:
                table.setdefault(name, ext.name)
        return table

    @cached_property
    def capabilities(self) -> frozenset[str]:
        """Every capability `require` accepts."""
        names = {ext.name for ext in self.extensions if ext.name}
        names.update(f"comparator-{c}" for c in BUILTIN_COMPARATORS)
        return frozenset(names)

    @cached_property
    def advertised(self) -> tuple[str, ...]:
        """The SIEVE capability list (RFC 5804 §1.7), sorted."""
        return tuple(sorted(ext.name for ext in self.extensions
                            if ext.name and not ext.hidden))

    def register(self) -> None:
        """Register every command name with sievelib (once per process)."""
        if self._registered:
            return
        with self._lock:
            if self._registered:
                return
            specs = [s for s in self.commands.values() if s.name not in grammar.STRUCTURAL]
            grammar.register_all(
                tests=[s.name for s in specs if s.kind == "test"],
                commands=[s.name for s in specs if s.kind == "command"],
                block_commands=[s.name for s in specs if s.kind == "block"
                                and s.name not in ("if", "elsif", "else")],
            )
            self._registered = True


REGISTRY = Registry()
