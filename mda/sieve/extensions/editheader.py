"""editheader — RFC 5293 (§4 addheader, §5 deleteheader, §6 limits on changes, §7 interaction
with other tests and actions).

- `addheader [:last] <field-name> <value>` inserts a field at the top of the header (after
  the last field with `:last`). A non-ASCII value is stored as RFC 2047 encoded words
  (UTF-8, base64) around the words that need it; a long value is folded at spaces (the
  fold keeps the space, so unfolding gives the value back exactly); line breaks inside the
  value become folds and trailing ones are dropped (§4: the value MUST be a valid field
  body). A value longer than `Environment.editheader_max_header_size` bytes (2048) is an
  error.
- `deleteheader [:index N [:last]] [COMPARATOR] [MATCH-TYPE] <field-name> [<value-patterns>]`
  deletes the named fields, or only those whose decoded value matches a pattern; `:index`
  (part of editheader, no `require "index"` needed) limits it to the N-th occurrence, from
  the end with `:last`. `:last` without `:index` is a compile error; `:count` is refused
  (it counts values, which deleteheader does not test; Pigeonhole crashes on it).
- Later tests see the change (§7): the edited message replaces the one tests read. Every
  keep, fileinto and redirect executed after a change carries the message as it was then
  (`Keep.message`...), one executed before carries none (the message as received), and
  `Result.message` is the final message, which the implicit keep stores. A second fileinto
  into the same mailbox is merged into the first and keeps its version, as Pigeonhole does.
- Protected fields (§6: "MUST NOT permit attempts to delete Received", "MUST permit"
  Subject): deleting Received, Auto-Submitted or X-Sieve-Redirected-From and adding
  X-Sieve-Redirected-From are refused, as are the fields named in
  `Environment.editheader_forbid_add/_delete`; Subject can always be added and deleted.
  A refused change is a warning (compile-time for constant names) and is silently skipped
  at run time, as §6 requires ("MUST be silently ignored").
- An invalid field name is a compile error when constant and a run-time error when
  computed.

Deviations (from Pigeonhole, RFC-consistent): Pigeonhole lets later tests see an added
value with its leading white space and, for a value with a line break, only its first
line; here tests see exactly what the stored copy will show when read back (white space
stripped, folds unfolded). Pigeonhole folds by replacing a space with a TAB; here the
space is kept. Complete.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from mda.sieve.common import indexed, match, validate_match
from mda.sieve.core import valid_field_name
from mda.sieve.errors import SieveRuntimeError
from mda.sieve.message import HeaderField
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec

#: Pigeonhole refuses these whatever the configuration (RFC 5293 §6 names Received)
NEVER_DELETE = frozenset({"received", "auto-submitted", "x-sieve-redirected-from"})
NEVER_ADD = frozenset({"x-sieve-redirected-from"})
ALWAYS_EDITABLE = "subject"  # RFC 5293 §6: MUST permit adding and deleting Subject
LINE_LIMIT = 78  # RFC 5322 §2.1.1: lines SHOULD be no more than 78 characters
_WORD_BYTES = 45  # raw bytes per encoded word: 10 + 60 + 2 = 72 characters
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def may_add(name: str, forbidden: tuple[str, ...] = ()) -> bool:
    """RFC 5293 §6: may a script add a field with this name?

    Args:
        forbidden: further names the administrator protects
            (`Environment.editheader_forbid_add`).
    """
    lowered = name.lower()
    if lowered == ALWAYS_EDITABLE:
        return True
    return lowered not in NEVER_ADD and lowered not in {n.lower() for n in forbidden}


def may_delete(name: str, forbidden: tuple[str, ...] = ()) -> bool:
    """RFC 5293 §6: may a script delete fields with this name?

    Args:
        forbidden: further names the administrator protects
            (`Environment.editheader_forbid_delete`).
    """
    lowered = name.lower()
    if lowered in NEVER_DELETE:
        return False
    return lowered == ALWAYS_EDITABLE or lowered not in {n.lower() for n in forbidden}


def _encoded_words(text: str) -> list[str]:
    data = text.encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        end = min(start + _WORD_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # never split a character
            end -= 1
        words.append("=?utf-8?b?" + base64.b64encode(data[start:end]).decode("ascii") + "?=")
        start = end
    return words


def encode_value(value: str) -> str:
    """RFC 2047 §5: encode the run of words from the first to the last non-ASCII one."""
    if value.isascii():
        return value
    words = value.split(" ")
    needs = [i for i, w in enumerate(words) if not w.isascii()]
    first, last = needs[0], needs[-1]
    encoded = _encoded_words(" ".join(words[first:last + 1]))
    return " ".join(words[:first] + encoded + words[last + 1:])


def field_body(name: str, value: str) -> bytes:
    """The bytes after `name:` of a new field: encoded, folded, CRLF-terminated."""
    value = _LINE_BREAK.sub("\n", encode_value(value)).rstrip("\n")
    if "\n" in value:
        lines = value.split("\n")
        value = "\r\n".join([lines[0]] + [ln if ln[:1] in (" ", "\t") else "\t" + ln
                                          for ln in lines[1:]])
        return f" {value}\r\n".encode("utf-8")
    pieces = re.split(r"(?= )", value)
    lines = [f" {pieces[0]}"]
    width = len(name) + 1 + len(lines[0])
    for piece in pieces[1:]:
        if width + len(piece) > LINE_LIMIT and lines[-1].strip():
            lines.append(piece)
            width = len(piece)
        else:
            lines[-1] += piece
            width += len(piece)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _check_name(compiler: Any, call: Call, value: Any, allowed: Any) -> None:
    if not isinstance(value, str):
        return
    if not valid_field_name(value):
        compiler.error("bad-value", f"{call.name}: \"{value}\" is not a valid header field "
                       "name (RFC 5293 §4, RFC 5322 §3.6.8)")
    if not allowed(value):
        compiler.warn(f"line {call.line}: {call.name}: the header field \"{value}\" is "
                      "protected; the change will be ignored (RFC 5293 §6)")


def _validate_add(call: Call, compiler: Any) -> Call:
    _check_name(compiler, call, call.args[0], may_add)
    value = call.args[1]
    if isinstance(value, str) and "\0" in value:
        compiler.error("bad-value", "addheader: the value contains a NUL character "
                       "(RFC 5293 §4, RFC 5322 §2.2)")
    return call


def _runtime_name(ctx: Any, call: Call) -> str:
    name = ctx.string(call.args[0])
    if not valid_field_name(name):
        raise SieveRuntimeError(f"{call.name}: \"{name}\" is not a valid header field name "
                                "(RFC 5293 §4)", call.line)
    return name


def _run_add(ctx: Any, call: Call) -> None:
    name = _runtime_name(ctx, call)
    value = ctx.string(call.args[1])
    if not may_add(name, ctx.environment.editheader_forbid_add):
        ctx.warn(f"addheader: adding \"{name}\" is not permitted; ignored", call)
        return
    limit = ctx.environment.editheader_max_header_size
    if len(value.encode("utf-8")) > limit:
        raise SieveRuntimeError(f"addheader: the value of \"{name}\" is longer than "
                                f"{limit} bytes", call.line)
    if "\0" in value:
        raise SieveRuntimeError("addheader: the value contains a NUL character", call.line)
    field = HeaderField(name, field_body(name, value))
    fields = list(ctx.message.fields)
    if call.tag(":last"):
        fields.append(field)
    else:
        fields.insert(0, field)
    ctx.message = ctx.message.with_fields(fields)


def _validate_delete(call: Call, compiler: Any) -> Call:
    if call.tag(":last") and ":index" not in call.tags:
        compiler.error("bad-argument", "deleteheader: :last needs :index (RFC 5293 §5)")
    if call.groups.get("match-type") == ":count":
        compiler.error("bad-argument", "deleteheader cannot use :count: it deletes fields "
                       "by their values (RFC 5293 §5)")
    _check_name(compiler, call, call.args[0], may_delete)
    if call.args[1] is None:
        call = compiler.replace(call, args=(call.args[0], ()))
    return validate_match(call, compiler)


def _run_delete(ctx: Any, call: Call) -> None:
    name = _runtime_name(ctx, call)
    if not may_delete(name, ctx.environment.editheader_forbid_delete):
        ctx.warn(f"deleteheader: deleting \"{name}\" is not permitted; ignored", call)
        return
    lowered = name.lower()
    fields = ctx.message.fields
    positions = [i for i, f in enumerate(fields) if f.name.lower() == lowered]
    patterns = ctx.strings(call.args[1])
    doomed = set()
    for position in indexed(call, positions):
        if not patterns or match(ctx, call, [fields[position].value], patterns):
            doomed.add(position)
    if doomed:
        ctx.message = ctx.message.with_fields(
            [f for i, f in enumerate(fields) if i not in doomed])


EXTENSION = Extension(
    name="editheader",
    commands=(
        CommandSpec("addheader", "command", ("string", "string"), extension="editheader",
                    validate=_validate_add, run=_run_add),
        CommandSpec("deleteheader", "command", ("string", "stringlist"), optional_trailing=1,
                    groups=("comparator", "match-type"), extension="editheader",
                    validate=_validate_delete, run=_run_delete),
    ),
    tags=(
        TagSpec(":last", commands=("addheader",), extension="editheader"),
        TagSpec(":index", arg="number", commands=("deleteheader",), extension="editheader"),
        TagSpec(":last", commands=("deleteheader",), extension="editheader"),
    ),
)
