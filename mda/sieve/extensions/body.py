"""body — RFC 5173 (§4 the body test, §5 the transforms :raw, :content and :text).

- `:raw`: the body as transferred, MIME structure and encodings included (§5.1).
- `:content <types>`: the decoded content (base64 and quoted-printable undone, charset
  converted to Unicode) of every part whose type matches: "type" matches any subtype,
  "type/subtype" that one type, "" every part; for multipart parts the preamble and
  epilogue text is what is tested (§5.2).
- `:text` (the default): the decoded content of the text/* parts (§5.3).

Each part is one value, so `:is` compares a whole part (line ends are CRLF as
transferred). Complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mda.sieve.common import match, validate_match
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


def body_values(ctx: Any, call: Call) -> list[str]:
    """The strings the body test matches, per transform."""
    message = ctx.message
    if call.tag(":raw"):
        return [decode_bytes(message.body)]
    if ":content" in call.tags:
        wanted = ctx.strings(call.tag(":content"))
    else:
        wanted = ["text"]
    values: list[str] = []
    for part in walk(message.mime):
        if not any(_type_matches(part.content_type, w) for w in wanted):
            continue
        if part.is_multipart:
            values.append(decode_bytes(part.preamble) + decode_bytes(part.epilogue))
        elif part.content_type == "message/rfc822":
            continue
        else:
            values.append(part.text())
    return values


def _run(ctx: Any, call: Call) -> bool:
    return match(ctx, call, body_values(ctx, call), ctx.strings(call.args[0]))


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
