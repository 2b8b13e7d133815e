"""body — RFC 5173 (§4 the body test, §5 the transforms :raw, :content and :text).

- `:raw`: the body as transferred, MIME structure and encodings included (§5.1).
- `:content <types>`: the decoded content (base64 and quoted-printable undone, charset
  converted to Unicode) of every part whose type matches: "type" matches any subtype,
  "type/subtype" that one type, "" every part; for multipart parts the preamble and
  epilogue text is what is tested (§5.2).
- `:text` (the default): the decoded content of the text/* parts (§5.3).

Each part is one value, so `:is` compares a whole part (line ends are CRLF as
transferred). Complete.

Memory: the values are made and matched one at a time (except under `:count`), each part
decoded from the message by offsets (`mda.sieve.message`), and `:contains` with i;octet or
i;ascii-casemap searches the decoded string itself, so a large part costs its text once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from mda.sieve.common import match, validate_match
from mda.sieve.matching import Comparator
from mda.sieve.message import MimePart, decode_bytes
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec


def walk(part: MimePart) -> Iterator[MimePart]:
    """The part and all its descendants, depth first, parents before children."""
    yield part
    for child in part.children:
        yield from walk(child)


def _type_matches(content_type: str, wanted: str) -> bool:
    wanted = wanted.strip().lower()
    if wanted == "":
        return True
    if "/" in wanted:
        return content_type == wanted
    return content_type.split("/", 1)[0] == wanted


def iter_body_values(ctx: Any, call: Call) -> Iterator[str]:
    """The strings the body test matches, per transform, made one at a time (each part
    decoded only when the previous one has been matched)."""
    message = ctx.message
    if call.tag(":raw"):
        yield decode_bytes(message.body_view())
        return
    if ":content" in call.tags:
        wanted = ctx.strings(call.tag(":content"))
    else:
        wanted = ["text"]
    for part in walk(message.mime):
        if not any(_type_matches(part.content_type, w) for w in wanted):
            continue
        if part.is_multipart:
            yield decode_bytes(part.preamble) + decode_bytes(part.epilogue)
        elif part.content_type != "message/rfc822":
            yield part.text()


def body_values(ctx: Any, call: Call) -> list[str]:
    """The strings the body test matches, per transform, all at once."""
    return list(iter_body_values(ctx, call))


#: the comparators whose :contains `_contains` can decide on the strings themselves
_OCTET_COMPARATORS = ("i;octet", "i;ascii-casemap")
_SURROGATE = re.compile("[\ud800-\udfff]")


#: match types that look at one value at a time, in order, keys inner (RFC 5228 §2.7.1,
#: RFC 5231 :value): matching value by value gives the same result and match variables
_VALUE_BY_VALUE = frozenset({":is", ":contains", ":matches", ":value"})


def _plain(text: str) -> bool:
    return text.isascii() or _SURROGATE.search(text) is None


#: values at least this long (characters) are searched in place by `_contains`; shorter
#: ones go the comparator's way, which is faster on them
LARGE_VALUE = 1 << 20
#: how much of a large ASCII value is lower-cased at a time
WINDOW = 1 << 20


def _contains(comparator: Comparator, value: str, keys: list[str]) -> bool | None:
    """:contains of i;octet or i;ascii-casemap on a large value decided without encoding
    all of it (the comparator would copy it twice: UTF-8 and lower case); None when
    undecided (a short value, another comparator, lone surrogates).

    Both compare UTF-8 octets (RFC 4790 §9.3, §9.2). For strings without lone surrogates
    the octets of a key occur in those of `value` exactly when the key occurs in `value`
    (UTF-8 is self-synchronising), and ASCII case folding of octets is ASCII case folding
    of characters: an ASCII value is lower-cased a window at a time, any other searched
    by a case-insensitive ASCII regular expression.
    """
    if comparator.name not in _OCTET_COMPARATORS or len(value) < LARGE_VALUE \
            or not _plain(value) or not all(_plain(key) for key in keys):
        return None
    if comparator.name == "i;octet":
        return any(key in value for key in keys)
    if not value.isascii():
        return any(_casefold_search(key)(value) is not None for key in keys)
    for key in keys:
        if not key.isascii():
            continue  # non-ASCII octets never occur in an ASCII value
        lowered = key.lower()
        if not lowered:
            return True
        overlap = max(len(lowered) - 1, 0)
        for start in range(0, len(value), WINDOW):
            if lowered in value[start:start + WINDOW + overlap].lower():
                return True
    return False


@lru_cache(maxsize=256)
def _casefold_search(key: str) -> Callable[[str], re.Match[str] | None]:
    return re.compile(re.escape(key), re.IGNORECASE | re.ASCII).search


def _run(ctx: Any, call: Call) -> bool:
    keys = ctx.strings(call.args[0])
    match_type = call.data.get("match_type", ":is")
    if match_type not in _VALUE_BY_VALUE:  # :count counts them, :regex tries keys first
        return match(ctx, call, body_values(ctx, call), keys)
    # Match the values one at a time, so only one decoded part is alive at once, and stop
    # at the first that matches.
    comparator = call.data["comparator"]
    for value in iter_body_values(ctx, call):
        found = _contains(comparator, value, keys) if match_type == ":contains" else None
        found = match(ctx, call, [value], keys) if found is None else found
        if found:
            return True
        del value  # before the next part is decoded
    return False


EXTENSION = Extension(
    name="body",
    commands=(CommandSpec("body", "test", ("stringlist",),
                          groups=("comparator", "match-type", "body-transform"),
                          extension="body", validate=validate_match, run=_run),),
    tags=(
        TagSpec(":raw", group="body-transform", commands=("body",)),
        TagSpec(":content", arg="stringlist", group="body-transform", commands=("body",)),
        TagSpec(":text", group="body-transform", commands=("body",)),
    ),
)
