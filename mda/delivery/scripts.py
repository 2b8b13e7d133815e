"""The administrator's Sieve scripts in `settings.sieve_scripts_dir`, compiled once.

Layout (Pigeonhole's sieve_before / sieve_default / sieve_after / sieve_global):

    sieve_scripts/
        before.d/*.sieve    run before the user's script, in name order
        default.sieve       runs for users without an active script
        after.d/*.sieve     run after it, in name order
        global/NAME.sieve   `include :global "NAME"` (RFC 6609 §3.2)

A file is compiled the first time it is needed and again only when it changes (its
modification time or size differs); programs are also shared through the engine's
content-hash cache. A global script that does not compile is logged once per version and
skipped, so mail is never lost to an administrator's mistake. Every method is synchronous
and thread-safe: delivery calls them from its evaluation worker thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from mda.sieve import Limits, Program, SieveCompileError, compile_cached

log = logging.getLogger("mda.delivery")

BEFORE_DIR = "before.d"
AFTER_DIR = "after.d"
GLOBAL_DIR = "global"
DEFAULT_SCRIPT = "default.sieve"
SUFFIX = ".sieve"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One file as last read: its version and what came of it."""

    version: tuple[int, int]  # (st_mtime_ns, st_size)
    source: bytes
    program: Program | None  # None: does not compile (logged)


class GlobalScripts:
    """The global scripts of one directory, compiled with one set of limits.

    Args:
        directory: `settings.sieve_scripts_dir`.
        limits: the engine limits (`mda.sieve_config.sieve_limits`).
    """

    def __init__(self, directory: Path, limits: Limits) -> None:
        self.directory = Path(directory)
        self.limits = limits
        self._entries: dict[Path, _Entry] = {}
        self._lock = threading.Lock()

    def before(self) -> list[Program]:
        """The compiled `before.d/*.sieve` scripts in name order, broken ones skipped."""
        return self._programs(self.directory / BEFORE_DIR)

    def after(self) -> list[Program]:
        """The compiled `after.d/*.sieve` scripts in name order, broken ones skipped."""
        return self._programs(self.directory / AFTER_DIR)

    def default(self) -> Program | None:
        """The compiled `default.sieve`, or None when it is missing or does not compile."""
        entry = self._load(self.directory / DEFAULT_SCRIPT)
        return entry.program if entry is not None else None

    def include(self, name: str) -> bytes | None:
        """The source of `global/NAME.sieve` for `include :global` (RFC 6609 §3.2).

        Args:
            name: the script name from the include command.

        Returns:
            The script bytes, or None when there is no such file or the name could leave
            the directory (`/`, `\\`, `..`, NUL).
        """
        if not name or any(bad in name for bad in ("/", "\\", "..", "\0")):
            return None
        entry = self._load(self.directory / GLOBAL_DIR / f"{name}{SUFFIX}", compile=False)
        return entry.source if entry is not None else None

    def _programs(self, folder: Path) -> list[Program]:
        try:
            paths = sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
        except OSError:  # no such directory: no scripts there
            return []
        programs = []
        for path in paths:
            entry = self._load(path)
            if entry is not None and entry.program is not None:
                programs.append(entry.program)
        return programs

    def _load(self, path: Path, *, compile: bool = True) -> _Entry | None:
        """The file's entry, re-read and recompiled when its mtime or size changed."""
        try:
            stat = path.stat()
        except OSError:
            return None
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._entries.get(path)
        if entry is not None and entry.version == version:
            return entry
        try:
            source = path.read_bytes()
        except OSError as exc:
            log.error("cannot read global Sieve script %s: %s; skipped", path, exc.strerror)
            return None
        program = None
        if compile:
            try:
                program = compile_cached(source, limits=self.limits)
            except SieveCompileError as exc:
                log.error("global Sieve script %s does not compile: %s; skipped", path, exc)
        entry = _Entry(version, source, program)
        with self._lock:
            self._entries[path] = entry
        return entry


__all__ = ["AFTER_DIR", "BEFORE_DIR", "DEFAULT_SCRIPT", "GLOBAL_DIR", "GlobalScripts"]
