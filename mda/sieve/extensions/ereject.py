"""ereject — RFC 5429 §2.2.

`ereject <reason>` refuses the message at the protocol level; mda answers it exactly as
`reject` (`550 5.7.1 <rcpt> <reason>`), so both share one run function and one action
type (`Reject(extended=True)`). Complete.
"""

from __future__ import annotations

from mda.sieve.extensions.reject import run_reject
from mda.sieve.spec import CommandSpec, Extension

EXTENSION = Extension(
    name="ereject",
    commands=(CommandSpec("ereject", "command", ("string",), extension="ereject",
                          run=run_reject),),
)
