"""comparator-i;unicode-casemap — RFC 5051.

Case-insensitive comparison of Unicode strings: values are case-folded and
NFKD-normalised for :is and :value; :contains and :matches fold per character, so `?`
matches one character with this comparator. Complete for the Sieve match types.
"""

from __future__ import annotations

from mda.sieve.spec import Extension

EXTENSION = Extension(name="comparator-i;unicode-casemap", comparators=("i;unicode-casemap",))
