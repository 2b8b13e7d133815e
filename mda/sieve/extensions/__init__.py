"""The Sieve extensions mda implements, one module each, listed explicitly.

Each module's docstring names its RFC, the sections implemented and any deliberate
deviation; each exposes one `EXTENSION` (`mda.sieve.spec.Extension`). The order here is
the registration order; a capability's commands and tags come from its own module only.
"""

from __future__ import annotations

from mda.sieve.extensions import (body, comparator_numeric, enotify, comparator_unicode, copy,
                                  encoded_character, envelope, environment, ereject,
                                  fileinto, ihave, imap4flags, index, mailbox, regex,
                                  reject, relational, subaddress, vacation,
                                  vacation_seconds, variables)
from mda.sieve.extensions import (date, duplicate, editheader, special_use, spamtest,
                                  spamtestplus, virustest)
from mda.sieve.extensions import extracttext, foreverypart, include, mime
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
    relational.EXTENSION,
    comparator_numeric.EXTENSION,
    comparator_unicode.EXTENSION,
    subaddress.EXTENSION,
    mailbox.EXTENSION,
    index.EXTENSION,
    date.EXTENSION,
    spamtest.EXTENSION,
    spamtestplus.EXTENSION,
    virustest.EXTENSION,
    editheader.EXTENSION,
    duplicate.EXTENSION,
    special_use.EXTENSION,
    regex.EXTENSION,
    environment.EXTENSION,
    ihave.EXTENSION,
    vacation.EXTENSION,
    vacation_seconds.EXTENSION,
    body.EXTENSION,
    enotify.EXTENSION,
    mime.EXTENSION,
    foreverypart.EXTENSION,
    extracttext.EXTENSION,
    include.EXTENSION,
)
