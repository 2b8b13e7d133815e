"""vacation-seconds — RFC 6131 §2.

Adds `:seconds N` to `vacation` as an alternative to `:days`; the same minimum (1 day by
default, `Environment.vacation_min_seconds`) applies, so `:seconds 0` also becomes one
day. Complete.
"""

from __future__ import annotations

from mda.sieve.spec import Extension, TagSpec

EXTENSION = Extension(
    name="vacation-seconds",
    tags=(TagSpec(":seconds", arg="number", commands=("vacation",), group="period",
                  extension="vacation-seconds"),),
)
