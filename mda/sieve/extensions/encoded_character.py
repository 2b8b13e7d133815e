"""encoded-character — RFC 5228 §2.4.2.4.

When required, `${hex:XX XX}` and `${unicode:XXXX}` in strings are replaced at compile
time (see `mda.sieve.strings.decode_encoded_characters`); a malformed sequence is left as
written, an invalid result (not UTF-8, a surrogate) is a compile error. Complete.
"""

from __future__ import annotations

from mda.sieve.spec import Extension

EXTENSION = Extension(name="encoded-character")
