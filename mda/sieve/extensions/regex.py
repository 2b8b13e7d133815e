"""regex — draft-murchison-sieve-regex-08 (§3 the :regex match type, §4 :quoteregex).

Keys are POSIX-style extended regular expressions, run with the `regex` package and a
per-match timeout (`Limits.regex_timeout`); a timeout is a run-time error, never a hung
worker. With i;ascii-casemap (the default) matching is case-insensitive. A constant key
that does not compile is a compile error (§3); one computed at run time is a run-time
error. A match sets the match variables: ${0} the whole match, ${N} the groups.
Complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import regex as re_mod

from mda.sieve.errors import SieveRuntimeError
from mda.sieve.matching import Comparator
from mda.sieve.spec import Call, Extension, TagSpec
from mda.sieve.strings import Template


def _flags(comparator: Comparator) -> int:
    if comparator.name in ("i;ascii-casemap", "i;unicode-casemap"):
        return re_mod.IGNORECASE
    return 0


def compile_key(key: str, comparator: Comparator) -> Any:
    """Compile one key. Raises re_mod.error when it is not a valid expression."""
    return re_mod.compile(key, _flags(comparator) | re_mod.VERSION0)


def validate_keys(call: Call, compiler: Any) -> None:
    """Compile-time check of constant :regex keys (the last argument, draft §3)."""
    keys = call.args[-1] if call.args else ()
    comparator = call.data.get("comparator")
    if comparator is not None and comparator.name == "i;ascii-numeric":
        compiler.error("bad-argument", ":regex cannot be used with i;ascii-numeric")
    for key in keys:
        if isinstance(key, Template):
            continue
        try:
            compile_key(key, comparator or Comparator("i;octet"))
        except re_mod.error as exc:
            compiler.error("bad-value", f"invalid regular expression \"{key}\": {exc} "
                           "(draft-murchison-sieve-regex §3)")


def _regex(ctx: Any, call: Call, comparator: Comparator, values: Sequence[str],
           keys: Sequence[str]) -> bool:
    for key in keys:
        try:
            pattern = compile_key(key, comparator)
        except re_mod.error as exc:
            raise SieveRuntimeError(f"invalid regular expression \"{key}\": {exc}",
                                    call.line) from None
        for value in values:
            try:
                m = pattern.search(value, timeout=ctx.limits.regex_timeout)
            except TimeoutError:
                raise SieveRuntimeError("regular expression took too long "
                                        f"(limit {ctx.limits.regex_timeout} s)",
                                        call.line) from None
            if m is not None:
                ctx.set_match_values([m.group(0)] + [g or "" for g in m.groups()])
                return True
    return False


EXTENSION = Extension(
    name="regex",
    tags=(
        TagSpec(":regex", group="match-type", extension="regex", impl=_regex,
                check=validate_keys),
        TagSpec(":quoteregex", commands=("set",), group="quote15", extension="regex"),
    ),
)
