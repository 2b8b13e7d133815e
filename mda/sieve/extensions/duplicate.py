"""duplicate — RFC 7352 (§3 the duplicate test, §3.1 :header/:uniqueid, §3.2 :handle,
§3.3 :seconds, §3.4 :last).

`duplicate [:handle H] [:header NAME / :uniqueid VALUE] [:seconds N] [:last]` is true when
the unique ID of this message (the first Message-ID field by default, the first NAME
field, or VALUE) was recorded for the user by an earlier delivery within the period.

The engine is sans-IO, so it works as Pigeonhole does, in two steps:

1. The test asks the host `duplicate_seen(id_hash, seconds)` (see `Host`). The key is
   the hex SHA-256 of the handle (or "default"), whether `:last` was given, and the ID, so
   different handles and `:last`/not are tracked apart (§3.2). With `:last`, an entry
   recorded without `:last` counts as seen too.
2. It does not record anything itself: when the ID was not seen, or with `:last` (which
   restarts the period at every delivery, §3.4), it adds a `DuplicateMark` to
   `Result.duplicate_ids`. The delivery layer writes those records for the user only
   once that recipient's delivery has committed (never after a run-time error, a failed
   store or a temporary failure), with an expiry `seconds` from the delivery. A message
   that was not delivered therefore is not a duplicate when it comes again.

The same test twice in one run gives the same answer and one record. A missing header
makes the test false and records nothing. The period is `:seconds` (clamped to
`Environment.duplicate_max_seconds`, 2 days, with a warning) or
`Environment.duplicate_default_seconds` (12 hours), Pigeonhole's defaults. `:header` and
`:uniqueid` exclude each other (§3.1); a constant `:header` must be a valid field name.
Complete.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mda.sieve.actions import DuplicateMark
from mda.sieve.core import valid_field_name
from mda.sieve.interpreter import host_call
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec

DEFAULT_HEADER = "Message-ID"


def id_hash(handle: str | None, last: bool, unique_id: str) -> str:
    """The tracking key of one (handle, :last, ID) combination (hex SHA-256)."""
    digest = hashlib.sha256(b"sieve duplicate")
    digest.update(b"0" if last else b"+")
    digest.update(b"h-" + handle.encode("utf-8") if handle is not None else b"default")
    digest.update(unique_id.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _validate(call: Call, compiler: Any) -> Call:
    header = call.tag(":header")
    if isinstance(header, str) and not valid_field_name(header):
        compiler.error("bad-value", f"duplicate :header \"{header}\" is not a valid header "
                       "field name (RFC 7352 §3.1)")
    return call


def _unique_id(ctx: Any, call: Call) -> str | None:
    if ":uniqueid" in call.tags:
        return ctx.string(call.tag(":uniqueid"))
    name = ctx.string(call.tag(":header")) if ":header" in call.tags else DEFAULT_HEADER
    if not valid_field_name(name):
        return None
    values = ctx.message.header_values(name)
    return values[0] if values else None


def _period(ctx: Any, call: Call) -> int:
    env = ctx.environment
    seconds = call.tag(":seconds")
    if seconds is None:
        return env.duplicate_default_seconds
    if env.duplicate_max_seconds and seconds > env.duplicate_max_seconds:
        ctx.warn(f"duplicate :seconds {seconds} is over the maximum; using "
                 f"{env.duplicate_max_seconds}", call)
        return env.duplicate_max_seconds
    return seconds


def _run(ctx: Any, call: Call) -> bool:
    unique_id = _unique_id(ctx, call)
    if unique_id is None:
        return False
    handle = ctx.string(call.tag(":handle")) if ":handle" in call.tags else None
    last = bool(call.tag(":last"))
    key = id_hash(handle, last, unique_id)
    answers: dict[str, bool] = ctx.state.setdefault("duplicate_answers", {})
    if key in answers:
        return answers[key]
    seconds = _period(ctx, call)
    seen = bool(host_call(ctx.host, "duplicate_seen", key, seconds))
    if not seen and last:
        seen = bool(host_call(ctx.host, "duplicate_seen", id_hash(handle, False, unique_id),
                              seconds))
    if not seen or last:
        ctx.state.setdefault("duplicate_marks", []).append(
            DuplicateMark(key, seconds, handle, last))
    answers[key] = seen
    return seen


EXTENSION = Extension(
    name="duplicate",
    commands=(CommandSpec("duplicate", "test", extension="duplicate", validate=_validate,
                          run=_run),),
    tags=(
        TagSpec(":handle", arg="string", commands=("duplicate",)),
        TagSpec(":header", arg="string", group="duplicate-id", commands=("duplicate",)),
        TagSpec(":uniqueid", arg="string", group="duplicate-id", commands=("duplicate",)),
        TagSpec(":seconds", arg="number", commands=("duplicate",)),
        TagSpec(":last", commands=("duplicate",)),
    ),
)
