"""enotify — RFC 5435 (§3 the notify action, §4 valid_notify_method, §5
notify_method_capability, §6 the :encodeurl modifier of `set`) with the mailto method of
RFC 5436.

Evaluation only; the notification is built and sent by the delivery layer
(`mda.delivery.outbound`, `mda.outbound.compose.notification`). The only method is
`mailto:` (RFC 6068 URIs, `parse_mailto`): recipients are the addresses before `?` (split at
percent-encoded commas), then those of the `to=` header fields, then of `cc=`, decoded. A
literal comma in the address part, an unparseable address or an unknown scheme is a
compile error for a constant URI (RFC 5435 §3.8: "...MUST ... error") and a run-time
error for a computed one. `notify_method_capability` answers "maybe" for "online", as
mail gives no presence information (RFC 5436 §2.4). Complete for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from mda.sieve.actions import Notify
from mda.sieve.addresses import parse_address
from mda.sieve.common import match, validate_match
from mda.sieve.errors import SieveRuntimeError
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec


@dataclass(frozen=True, slots=True)
class Mailto:
    """A parsed `mailto:` URI (RFC 6068 §2), as the mailto notification method uses it.

    Attributes:
        to: the addresses of the part before `?` and of `to=` header fields, decoded.
        cc: the addresses of `cc=` header fields.
        headers: the other header fields as (lower-case name, decoded value), in order
            (`subject`, `body`, ...; RFC 5436 §2.7 says which are honoured).
    """

    to: tuple[str, ...]
    cc: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        """The first value of header field `name` (any case), or None."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key == lowered), None)


def _addresses(raw: str) -> list[str] | None:
    out = []
    for text in (a for a in raw.split(",") if a.strip()):
        addr = parse_address(text.strip())
        if addr is None:
            return None
        out.append(addr.all)
    return out


def parse_mailto(uri: str) -> Mailto | None:
    """Parse a mailto: URI (RFC 6068 §2): recipients before `?` (split at percent-encoded
    commas; a literal comma there is an error, RFC 5435 §3.8), then `hfname=hfvalue` pairs.

    Returns:
        The parsed URI, or None when the scheme is not mailto, an address does not parse
        or there is no recipient at all.
    """
    if not uri.lower().startswith("mailto:"):
        return None
    rest = uri[len("mailto:"):]
    to_part, _, query = rest.partition("?")
    if "," in to_part:
        return None
    to = _addresses(unquote(to_part))
    cc: list[str] | None = []
    headers = []
    for field in query.split("&") if query else ():
        name, _, value = field.partition("=")
        name, value = unquote(name).lower(), unquote(value)
        if name == "to":
            more = _addresses(value)
            to = None if to is None or more is None else to + more
        elif name == "cc":
            more = _addresses(value)
            cc = None if cc is None or more is None else cc + more
        elif name:
            headers.append((name, value))
    if to is None or cc is None or not (to or cc):
        return None
    return Mailto(tuple(to), tuple(cc), tuple(headers))


def mailto_recipients(uri: str) -> list[str] | None:
    """The recipients of a mailto: URI (To part, then to= and cc=), or None if invalid."""
    parsed = parse_mailto(uri)
    return None if parsed is None else [*parsed.to, *parsed.cc]


def _validate_notify(call: Call, compiler: Any) -> Call:
    uri = call.args[0]
    if isinstance(uri, str) and mailto_recipients(uri) is None:
        compiler.error("bad-value", f"unsupported or invalid notification method \"{uri}\" "
                       "(RFC 5435 §3.8, RFC 5436)")
    importance = call.tag(":importance")
    if isinstance(importance, str) and importance not in ("1", "2", "3"):
        compiler.error("bad-value", ":importance must be \"1\", \"2\" or \"3\" "
                       "(RFC 5435 §3.6)")
    return call


def _run_notify(ctx: Any, call: Call) -> None:
    uri = ctx.string(call.args[0])
    recipients = mailto_recipients(uri)
    if recipients is None:
        raise SieveRuntimeError(f"invalid notification method \"{uri}\" (RFC 5435 §3.8)",
                                call.line)
    message = call.tag(":message")
    sender = call.tag(":from")
    ctx.add(Notify(method=uri, recipients=tuple(recipients),
                   from_=ctx.string(sender) if sender is not None else None,
                   importance=ctx.string(call.tag(":importance", "2")),
                   options=tuple(ctx.strings(call.tag(":options", ()))),
                   message=ctx.string(message) if message is not None else None), call)


def _run_valid(ctx: Any, call: Call) -> bool:
    return all(mailto_recipients(u) is not None for u in ctx.strings(call.args[0]))


def _run_capability(ctx: Any, call: Call) -> bool:
    uri = ctx.string(call.args[0])
    if mailto_recipients(uri) is None:
        return False
    if ctx.string(call.args[1]).lower() != "online":
        return False
    return match(ctx, call, ["maybe"], ctx.strings(call.args[2]))


EXTENSION = Extension(
    name="enotify",
    commands=(
        CommandSpec("notify", "command", ("string",), extension="enotify",
                    validate=_validate_notify, run=_run_notify),
        CommandSpec("valid_notify_method", "test", ("stringlist",), extension="enotify",
                    run=_run_valid),
        CommandSpec("notify_method_capability", "test", ("string", "string", "stringlist"),
                    groups=("comparator", "match-type"), extension="enotify",
                    validate=validate_match, run=_run_capability),
    ),
    tags=(
        TagSpec(":from", arg="string", commands=("notify",)),
        TagSpec(":importance", arg="string", commands=("notify",)),
        TagSpec(":options", arg="stringlist", commands=("notify",)),
        TagSpec(":message", arg="string", commands=("notify",)),
    ),
)
