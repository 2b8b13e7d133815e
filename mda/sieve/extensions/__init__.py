"""The Sieve extensions mda implements, one module each, listed explicitly.

Each module's docstring names its RFC, the sections implemented and any deliberate
deviation; each exposes one `EXTENSION` (`mda.sieve.spec.Extension`). The order here is
the registration order; a capability's commands and tags come from its own module only.
"""

from __future__ import annotations

from mda.sieve.extensions import (copy, encoded_character, envelope, ereject, fileinto,
                                  imap4flags, reject, variables)
from mda.sieve.spec import Extension

EXTENSIONS: tuple[Extension, ...] = (
    fileinto.EXTENSION,
    envelope.EXTENSION,
    reject.EXTENSION,
    ereject.EXTENSION,
    encoded_character.EXTENSION,
    copy.EXTENSION,
    imap4flags.EXTENSION,
    variables.EXTENSION,
)
