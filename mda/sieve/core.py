"""The base language of RFC 5228: control commands (§3), actions (§4) and tests (§5).

Every command here needs no `require`. Extensions live in `mda.sieve.extensions`.
"""

from __future__ import annotations

import re
from typing import Any

from mda.sieve.actions import Discard, Keep, Redirect
from mda.sieve.addresses import parse_address_list
from mda.sieve.common import (ADDRESS_PART_TAGS, COMPARATOR_TAG, MATCH_TAGS,
                              append_address_part, check_constants, indexed, match,
                              validate_match)
from mda.sieve.errors import SieveRuntimeError
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec
from mda.sieve.strings import Template

#: RFC 5322 §3.6.8 field-name: printable US-ASCII except colon
FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")

#: headers the address test accepts (RFC 5228 §5.1: "Implementations MUST restrict the
#: address test to headers that contain addresses")
ADDRESS_HEADERS = frozenset({
    "from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender",
    "resent-to", "resent-cc", "resent-bcc", "resent-reply-to", "return-path",
    "delivered-to", "envelope-to", "x-original-to", "x-envelope-to", "original-recipient",
    "disposition-notification-to", "errors-to", "mail-followup-to", "mail-reply-to",
    "return-receipt-to", "apparently-to", "x-beenthere", "x-original-from",
})


def valid_field_name(name: str) -> bool:
    """RFC 5228 §2.4.2.2 / RFC 5322 §3.6.8: is this a syntactically valid header name?"""
    return FIELD_NAME.fullmatch(name) is not None


# -- control (§3) ------------------------------------------------------------------------

def _run_if(ctx: Any, call: Call) -> None:
    if not call.tests or ctx.test(call.tests[0]):
        ctx.run_block(call.block)
    elif call.orelse is not None:
        ctx.tick(call.orelse)
        call.orelse.spec.run(ctx, call.orelse)


def _run_nothing(ctx: Any, call: Call) -> None:
    return None


def _run_stop(ctx: Any, call: Call) -> None:
    ctx.stop()


# -- actions (§4) -------------------------------------------------------------------------

def _run_keep(ctx: Any, call: Call) -> None:
    ctx.add(Keep(flags=current_flags(ctx, call)), call)


def current_flags(ctx: Any, call: Call) -> frozenset[str]:
    """The flags for a store action: `:flags` if given, else the internal variable."""
    given = call.tag(":flags")
    if given is None:
        return frozenset(ctx.flags.values())
    from mda.sieve.extensions.imap4flags import flag_argument

    return frozenset(flag_argument(ctx, call, given).values())


def _run_discard(ctx: Any, call: Call) -> None:
    ctx.add(Discard(), call)


def _validate_redirect(call: Call, compiler: Any) -> Call:
    address = call.args[0]
    if not isinstance(address, Template) and normalise_redirect(address) is None:
        compiler.error("bad-value", redirect_address_error(address))
    return call


# RFC 5321 §4.1.2 Mailbox = Local-part "@" ( Domain / address-literal ), with the UTF-8
# characters RFC 6531 §3.3 allows in atoms, quoted strings and U-labels (no lone surrogates).
_UTF8 = "\x80-\ud7ff\ue000-\U0010ffff"
_ATEXT = f"[A-Za-z0-9!#$%&'*+\\-/=?^_`{{|}}~{_UTF8}]"
_DOT_STRING = f"{_ATEXT}+(?:\\.{_ATEXT}+)*"
_QUOTED = f'"(?:[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e{_UTF8}]|\\\\[\\x20-\\x7e])*"'
_LET_DIG = f"[A-Za-z0-9{_UTF8}]"
_LABEL = f"{_LET_DIG}(?:[A-Za-z0-9\\-{_UTF8}]*{_LET_DIG})?"
_LITERAL = "\\[[\\x21-\\x5a\\x5e-\\x7e]+\\]"
_MAILBOX = re.compile(f"(?:{_DOT_STRING}|{_QUOTED})@(?:{_LABEL}(?:\\.{_LABEL})*|{_LITERAL})")
MAX_LOCAL_PART = 64  # octets, RFC 5321 §4.5.3.1.1
MAX_MAILBOX = 254  # octets: the 256-octet path (§4.5.3.1.3) without its angle brackets


def normalise_redirect(text: str) -> str | None:
    """The redirect target as it goes into RCPT TO, or None if it is not one mailbox.

    RFC 5228 §4.2 wants a valid address; what reaches the MTA is an RFC 5321 §4.1.2
    `Mailbox`, so only `local@domain` is accepted (quoted local parts and address literals
    included, UTF-8 as RFC 6531 allows), surrounding white space ignored. A display name,
    angle brackets, a comment or a list (`"Name <a@b>"`, `"<a@b>"`, `"a@b (x)"`,
    `"a@b, c@d"`) is refused rather than turned into something the script did not write.
    """
    candidate = text.strip(" \t")
    if _MAILBOX.fullmatch(candidate) is None:
        return None
    local = candidate.rpartition("@")[0]
    if (len(local.encode("utf-8")) > MAX_LOCAL_PART
            or len(candidate.encode("utf-8")) > MAX_MAILBOX):
        return None
    return candidate


def redirect_address_error(text: str) -> str:
    """The message for a redirect address `normalise_redirect` refuses."""
    return (f"redirect: \"{text}\" is not a valid address: give local@domain only, without "
            "a display name, angle brackets or comments (RFC 5228 §4.2, RFC 5321 §4.1.2)")


REDIRECTED_FROM = "X-Sieve-Redirected-From"
"""The header a redirected message carries: the address of the user whose script redirected
it. mda adds it when sending (`mda.outbound`); a message arriving with the user's own address
in it was redirected by this user before and is not redirected again (loop prevention)."""


def redirected_by_user(ctx: Any) -> bool:
    """Whether the message as received names one of the user's addresses (the envelope
    recipient, `Environment.user_addresses`) in `X-Sieve-Redirected-From`; compared
    case-insensitively, as a loop is worse than a missed redirect."""
    own = {text.lower() for text in (ctx.envelope.rcpt_to, *ctx.environment.user_addresses)}
    for value in ctx.original.raw_header_values(REDIRECTED_FROM):
        for addr in parse_address_list(value):
            if addr is not None and addr.all.lower() in own:
                return True
    return False


def _run_redirect(ctx: Any, call: Call) -> None:
    text = ctx.string(call.args[0])
    address = normalise_redirect(text)
    if address is None:
        raise SieveRuntimeError(redirect_address_error(text), call.line)
    if redirected_by_user(ctx):
        # Pigeonhole does the same: the redirect is dropped and, as it never happened, does
        # not cancel the implicit keep.
        ctx.warn(f"redirect to <{address}> not done: this user redirected the message before "
                 f"({REDIRECTED_FROM}), so it would loop; the implicit keep stays", call)
        return
    ctx.add(Redirect(address, copy=bool(call.tag(":copy"))), call)


# -- tests (§5) ---------------------------------------------------------------------------

def _run_true(ctx: Any, call: Call) -> bool:
    return True


def _run_false(ctx: Any, call: Call) -> bool:
    return False


def _run_not(ctx: Any, call: Call) -> bool:
    return not ctx.test(call.tests[0])


def _run_allof(ctx: Any, call: Call) -> bool:
    return all(ctx.test(t) for t in call.tests)  # short-circuit, RFC 5228 §5.2


def _run_anyof(ctx: Any, call: Call) -> bool:
    return any(ctx.test(t) for t in call.tests)  # short-circuit, RFC 5228 §5.3


def _validate_tests(call: Call, compiler: Any) -> Call:
    wanted = 1 if call.name == "not" else None
    if not call.tests or (wanted is not None and len(call.tests) != wanted):
        compiler.error("missing-argument", f"'{call.name}' needs "
                       f"{'one test' if wanted else 'a test list'} (RFC 5228 §5)")
    return call


def header_values(ctx: Any, call: Call, names: list[str]) -> list[str]:
    """Decoded values of the named fields; invalid names match nothing (RFC 5228 §2.4.2.2).

    `:index`/`:last` (RFC 5260 §6) select one occurrence per field name.
    """
    values: list[str] = []
    for name in names:
        if valid_field_name(name):
            values.extend(indexed(call, ctx.message.header_values(name)))
    return values


def _run_header(ctx: Any, call: Call) -> bool:
    values = header_values(ctx, call, ctx.strings(call.args[0]))
    return match(ctx, call, values, ctx.strings(call.args[1]))


def _validate_address(call: Call, compiler: Any) -> Call:
    check_constants(compiler, call.args[0], ADDRESS_HEADERS,
                    "address test on \"{}\", which is not an address header (RFC 5228 §5.1)")
    return validate_match(call, compiler)


def address_values(ctx: Any, call: Call, fields: list[str]) -> list[str]:
    """The selected address parts of every address in the named fields (RFC 5228 §5.1)."""
    values: list[str] = []
    for name in fields:
        if not valid_field_name(name) or name.lower() not in ADDRESS_HEADERS:
            continue
        for raw in indexed(call, ctx.message.raw_header_values(name)):
            for addr in parse_address_list(raw):
                if addr is not None:
                    append_address_part(values, ctx, call, addr)
    return values


def _run_address(ctx: Any, call: Call) -> bool:
    values = address_values(ctx, call, ctx.strings(call.args[0]))
    return match(ctx, call, values, ctx.strings(call.args[1]))


def _run_exists(ctx: Any, call: Call) -> bool:
    names = ctx.strings(call.args[0])
    return all(valid_field_name(n) and ctx.message.has_header(n) for n in names)


def _validate_size(call: Call, compiler: Any) -> Call:
    if "size" not in call.groups:
        compiler.error("missing-argument", "size needs :over or :under (RFC 5228 §5.9)")
    return call


def _run_size(ctx: Any, call: Call) -> bool:
    limit = call.args[0]
    if call.tag(":over"):
        return ctx.message.size > limit
    return ctx.message.size < limit


MATCH_GROUPS = ("comparator", "match-type")

CORE = Extension(
    name="",
    commands=(
        CommandSpec("require", "command", ("stringlist",), run=_run_nothing),
        CommandSpec("if", "block", run=_run_if),
        CommandSpec("elsif", "block", run=_run_if),
        CommandSpec("else", "block", run=_run_if),
        CommandSpec("stop", "command", run=_run_stop),
        CommandSpec("keep", "command", run=_run_keep),
        CommandSpec("discard", "command", run=_run_discard),
        CommandSpec("redirect", "command", ("string",), validate=_validate_redirect,
                    run=_run_redirect),
        CommandSpec("true", "test", run=_run_true),
        CommandSpec("false", "test", run=_run_false),
        CommandSpec("not", "test", validate=_validate_tests, run=_run_not),
        CommandSpec("allof", "test", validate=_validate_tests, run=_run_allof),
        CommandSpec("anyof", "test", validate=_validate_tests, run=_run_anyof),
        CommandSpec("header", "test", ("stringlist", "stringlist"), groups=MATCH_GROUPS,
                    validate=validate_match, run=_run_header),
        CommandSpec("address", "test", ("stringlist", "stringlist"),
                    groups=(*MATCH_GROUPS, "address-part"), validate=_validate_address,
                    run=_run_address),
        CommandSpec("exists", "test", ("stringlist",), run=_run_exists),
        CommandSpec("size", "test", ("number",), groups=("size",), validate=_validate_size,
                    run=_run_size),
    ),
    tags=(
        COMPARATOR_TAG,
        *MATCH_TAGS,
        *ADDRESS_PART_TAGS,
        TagSpec(":over", group="size"),
        TagSpec(":under", group="size"),
    ),
)
