"""encoded-character — RFC 5228 §2.4.2.4.

When required, `${hex:HH HH}` and `${unicode:HHHH}` (H a hex digit) in strings are replaced at compile
time (see `mda.sieve.strings.decode_encoded_characters`); a malformed sequence is left as
written, an invalid result (not UTF-8, a surrogate) is a compile error. Complete.
"""

from __future__ import annotations

from mda.sieve.spec import Extension

EXTENSION = Extension(name="encoded-character")
