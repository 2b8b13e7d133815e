"""spamtestplus — RFC 5235 §3.2.2: the `:percent` argument of spamtest.

`spamtest :percent ...` matches the spam score as a percentage of the configured maximum,
"0".."100" (0 also when the message was not tested); the scoring is in `spamtest.py`.
Requiring "spamtestplus" also makes the spamtest test itself available (§3.2.2). Using
`:percent` with only "spamtest" required is a compile error. Complete.
"""

from __future__ import annotations

from mda.sieve.spec import Extension, TagSpec

EXTENSION = Extension(
    name="spamtestplus",
    tags=(TagSpec(":percent", commands=("spamtest",), extension="spamtestplus"),),
)
