"""mailbox — RFC 5490 §3 (§3.1 the mailboxexists test, §3.2 `fileinto :create`).

`mailboxexists` asks the host (`Host.mailbox_exists`; the delivery layer pre-fetches the
user's mailbox names, the dry run uses `--mailbox`); INBOX always exists. `:create`
is recorded on the FileInto action for the delivery layer. Complete.
"""

from __future__ import annotations

from typing import Any

from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec


def _run(ctx: Any, call: Call) -> bool:
    return all(ctx.host.mailbox_exists(name) for name in ctx.strings(call.args[0]))


EXTENSION = Extension(
    name="mailbox",
    commands=(CommandSpec("mailboxexists", "test", ("stringlist",), extension="mailbox",
                          run=_run),),
    tags=(TagSpec(":create", commands=("fileinto",), extension="mailbox"),),
)
