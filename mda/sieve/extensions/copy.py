"""copy — RFC 3894.

Adds `:copy` to `fileinto` and `redirect` (§3): the action no longer cancels the implicit
keep. Complete.
"""

from __future__ import annotations

from mda.sieve.spec import Extension, TagSpec

EXTENSION = Extension(
    name="copy",
    tags=(TagSpec(":copy", commands=("fileinto", "redirect"), extension="copy"),),
)
