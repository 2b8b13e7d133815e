"""reject and ereject — RFC 5429 §2.1 and §2.2.

`reject <reason>` / `ereject <reason>` refuse the message. Complete for evaluation; mda
answers both at the LMTP level (`550 5.7.1 <rcpt> <reason>`, RFC 5429 §2.1.1 allows
protocol-level refusal) instead of sending an MDN as Pigeonhole does for `reject`.
Conflicts with keep/fileinto/redirect/vacation and a second reject are run-time errors
(see `mda.sieve.rules`).
"""

from __future__ import annotations

from typing import Any

from mda.sieve.actions import Reject
from mda.sieve.spec import Call, CommandSpec, Extension


def run_reject(ctx: Any, call: Call) -> None:
    ctx.add(Reject(ctx.string(call.args[0]), extended=call.name == "ereject"), call)


EXTENSION = Extension(
    name="reject",
    commands=(CommandSpec("reject", "command", ("string",), extension="reject",
                          run=run_reject),),
)

