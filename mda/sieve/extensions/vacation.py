"""vacation — RFC 5230 (§4 the vacation action and its arguments, §4.1 :days, §4.2
:handle, §4.5 when not to reply, §4.7 interaction with other actions); `:seconds` is
added by `vacation_seconds.py` (RFC 6131).

Evaluation only: a `Vacation` action is put into the result when a reply is really due;
sending and the "already replied to this sender within the period" record belong to the
delivery layer (the action carries the handle and period for it). No reply is due
(§4.5, and Pigeonhole's rules) when:

- the envelope sender is null, or a system address (MAILER-DAEMON, LISTSERV, majordomo,
  owner-*, *-request, noreply);
- the sender is the user (the envelope recipient, `:addresses`, or the environment's
  user addresses);
- the message is automatic: Auto-Submitted other than "no" (RFC 3834 §5), Precedence
  bulk/junk/list, any List-* field (RFC 2369/2919), X-Auto-Response-Suppress OOF/All;
- none of the user's addresses is in To, Cc, Bcc, Resent-To, Resent-Cc or Resent-Bcc
  (§4.5: "...only if the user's address is in a recipient header").

The period is `:days`×86400 (or `:seconds`), default 7 days, raised to the configured
minimum (1 day) and, if one is configured, lowered to the maximum. A vacation with reject,
or a second vacation, is a run-time error (§4.7, see `mda.sieve.rules`). Complete for
evaluation.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mda.sieve.actions import Vacation
from mda.sieve.addresses import parse_address, parse_address_list
from mda.sieve.errors import SieveRuntimeError
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec

RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
SYSTEM_LOCALPARTS = ("mailer-daemon", "listserv", "majordomo", "noreply", "no-reply")


def _validate(call: Call, compiler: Any) -> Call:
    sender = call.tag(":from")
    if isinstance(sender, str):
        entries = parse_address_list(sender)
        if len(entries) != 1 or entries[0] is None:
            compiler.error("bad-value", f"vacation :from \"{sender}\" is not a valid "
                           "address (RFC 5230 §4.4)")
    return call


def _lower_address(text: str) -> str | None:
    addr = parse_address(text)
    return addr.all.lower() if addr is not None else None


def _is_system_sender(address: str) -> bool:
    local = address.rpartition("@")[0].lower()
    return (local in SYSTEM_LOCALPARTS or local.startswith("owner-")
            or local.endswith("-request"))


def _automatic(message: Any) -> bool:
    for value in message.header_values("auto-submitted"):
        if value.split(";")[0].strip().lower() != "no":
            return True
    for value in message.header_values("precedence"):
        if value.strip().lower() in ("bulk", "junk", "list"):
            return True
    if any(f.name.lower().startswith("list-") for f in message.fields):
        return True
    for value in message.header_values("x-auto-response-suppress"):
        tokens = {t.strip().lower() for t in value.split(",")}
        if tokens & {"oof", "all"}:
            return True
    return False


def reply_due(ctx: Any, own: set[str]) -> bool:
    """RFC 5230 §4.5: should a reply be sent for this message?"""
    sender = ctx.envelope.mail_from
    if sender in ("", "<>"):
        return False
    sender_addr = _lower_address(sender)
    if sender_addr is None or _is_system_sender(sender_addr) or sender_addr in own:
        return False
    if _automatic(ctx.message):
        return False
    for name in RECIPIENT_HEADERS:
        for raw in ctx.message.raw_header_values(name):
            for addr in parse_address_list(raw):
                if addr is not None and addr.all.lower() in own:
                    return True
    return False


def period(ctx: Any, call: Call) -> int:
    """The reply period in seconds after the configured bounds (§4.1, RFC 6131 §2)."""
    env = ctx.environment
    if ":seconds" in call.tags:
        seconds = call.tag(":seconds")
    elif ":days" in call.tags:
        seconds = call.tag(":days") * 86400
    else:
        seconds = env.vacation_default_seconds
    seconds = max(seconds, env.vacation_min_seconds)
    if env.vacation_max_seconds:
        seconds = min(seconds, env.vacation_max_seconds)
    return seconds


def _run(ctx: Any, call: Call) -> None:
    reason = ctx.string(call.args[0])
    subject = ctx.string(call.tag(":subject")) if ":subject" in call.tags else None
    sender = ctx.string(call.tag(":from")) if ":from" in call.tags else None
    addresses = ctx.strings(call.tag(":addresses", ()))
    own = {a for a in (_lower_address(x) for x in [ctx.envelope.rcpt_to, *addresses,
                                                    *ctx.environment.user_addresses]) if a}
    handle = ctx.string(call.tag(":handle")) if ":handle" in call.tags else \
        hashlib.sha256("\0".join([reason, subject or "", sender or "",
                                  str(bool(call.tag(":mime")))]).encode()).hexdigest()
    action = Vacation(reason=reason, seconds=period(ctx, call), subject=subject,
                      from_=sender, handle=handle, mime=bool(call.tag(":mime")),
                      sender=ctx.envelope.mail_from, addresses=tuple(sorted(own)))
    ctx.state["vacations"] = ctx.state.get("vacations", 0) + 1
    if ctx.state["vacations"] > 1:
        raise SieveRuntimeError("a second vacation action (RFC 5230 §4.7)", call.line)
    if reply_due(ctx, own):
        ctx.add(action, call)
    else:
        ctx.actions.check(action, call.line)  # a conflict is an error either way (§4.7)


EXTENSION = Extension(
    name="vacation",
    commands=(CommandSpec("vacation", "command", ("string",), extension="vacation",
                          validate=_validate, run=_run),),
    tags=(
        TagSpec(":days", arg="number", commands=("vacation",), group="period"),
        TagSpec(":subject", arg="string", commands=("vacation",)),
        TagSpec(":from", arg="string", commands=("vacation",)),
        TagSpec(":addresses", arg="stringlist", commands=("vacation",)),
        TagSpec(":mime", commands=("vacation",)),
        TagSpec(":handle", arg="string", commands=("vacation",)),
    ),
)
