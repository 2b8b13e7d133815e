"""comparator-i;ascii-numeric — RFC 4790 §9.1 (required as in RFC 5228 §2.7.3).

Compares the leading decimal digits as a number; a string without leading digits is
positive infinity, equal to every other such string (§9.1.1). It has no substring
operation, so `:contains` and `:matches` with it are compile errors. Complete.
"""

from __future__ import annotations

from mda.sieve.spec import Extension

EXTENSION = Extension(name="comparator-i;ascii-numeric", comparators=("i;ascii-numeric",))
