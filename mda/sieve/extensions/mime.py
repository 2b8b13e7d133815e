"""mime — RFC 5703 §4 (the `:mime` and `:anychild` tags on header, address and exists;
the `:type`, `:subtype`, `:contenttype` and `:param` options of `header :mime`).

- `:mime` makes header, address and exists look at the header of the *current MIME part*:
  inside `foreverypart` the part being visited, elsewhere the top-level message (§4.1).
- `:anychild` widens that to the current part and every part below it; the test is true
  when it is true for any of them (§4.1), and a successful `:matches` sets the match
  variables from the part that matched.
- `header :mime :type | :subtype | :contenttype` matches the parts of a Content-Type
  field (§4.2), case as written; `:param <names>` the values of the named parameters of a
  Content-Type or Content-Disposition field (RFC 2231 `name*` values decoded), in the
  order they appear. As in Pigeonhole: a field that is not Content-Type (for the three
  type options) or not Content-Type/Content-Disposition (for `:param`), a Content-Type
  that does not parse as `type/subtype`, or a field without any of the parameters, yields
  one empty string, so `:matches "*"` is true and `:count` counts it.
- The options are mutually exclusive, need `:mime`, and are only allowed on `header`;
  `:anychild` needs `:mime` (§4.1, §4.2). Compile errors otherwise.

Deviation: none known. The part structure comes from `Message.mime` (multipart children
in order, a message/rfc822 part's enclosed message as its one child).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from mda.sieve.common import indexed, match
from mda.sieve.core import valid_field_name
from mda.sieve.message import Message, MimePart
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec

MIME_COMMANDS = ("header", "address", "exists")
TYPE_OPTIONS = (":type", ":subtype", ":contenttype", ":param")

#: ctx.state key of the stack of parts foreverypart is visiting (innermost last)
PART_STACK = "mime.parts"

_TOKEN = r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_TYPE = re.compile(rf"\s*({_TOKEN})\s*/\s*({_TOKEN})\s*")
_DISPOSITION = re.compile(rf"\s*({_TOKEN})\s*")
_PARAM = re.compile(rf";\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED})\s*")
_COMMENT = re.compile(r"\((?:[^()\\]|\\.)*\)")
_SECTION = re.compile(r"^(.*?)(?:\*(\d+))?(\*)?$")


# -- the current part ---------------------------------------------------------------------

def current_part(ctx: Any) -> MimePart:
    """The part `foreverypart` is visiting, or the top-level message outside any loop."""
    stack = ctx.state.get(PART_STACK)
    return stack[-1] if stack else ctx.message.mime


def descendants(part: MimePart) -> Iterator[MimePart]:
    """Every part below `part`, depth first, parents before children (RFC 5703 §3)."""
    for child in part.children:
        yield child
        yield from descendants(child)


def part_view(part: MimePart) -> Message:
    """A `Message` whose header is the part's header, for the core tests to read."""
    return Message(b"", part.fields, 0)


def _selected_parts(ctx: Any, call: Call) -> list[MimePart]:
    part = current_part(ctx)
    if call.tag(":anychild"):
        return [part, *descendants(part)]
    return [part]


# -- Content-Type / Content-Disposition parsing ------------------------------------------

def _strip_comments(text: str) -> str:
    previous = None
    while previous != text:
        previous, text = text, _COMMENT.sub(" ", text)
    return text


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_params(rest: str) -> list[tuple[str, str]]:
    """Parameters `; name=value ...` in order, RFC 2231 sections and charsets decoded.

    Parsing stops at the first malformed parameter; what came before is kept.
    """
    raw: list[tuple[str, str]] = []
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None:
            break
        raw.append((m.group(1).lower(), m.group(2)))
        pos = m.end()
    out: list[tuple[str, str]] = []
    sections: dict[str, list[tuple[int, str, bool]]] = {}
    for name, value in raw:
        m = _SECTION.match(name)
        if m is None or (m.group(2) is None and m.group(3) is None):
            out.append((name, _unquote(value)))
            continue
        base = m.group(1)
        if base not in sections:
            sections[base] = []
            out.append((base, ""))  # placeholder keeps the order of first appearance
        sections[base].append((int(m.group(2) or 0), _unquote(value), bool(m.group(3))))
    return [(name, _join_sections(sections[name]) if name in sections and value == "" else
             value) for name, value in out]


def _join_sections(parts: list[tuple[int, str, bool]]) -> str:
    """RFC 2231 §3/§4: join continuations; decode charset'lang'%XX when marked with '*'."""
    parts.sort(key=lambda p: p[0])
    charset = "us-ascii"
    data = bytearray()
    for index, value, encoded in parts:
        if encoded:
            if index == 0 and value.count("'") >= 2:
                charset, _, value = value.split("'", 2)
            data += urllib.parse.unquote_to_bytes(value)
        else:
            data += value.encode("utf-8")
    try:
        return data.decode(charset or "us-ascii")
    except (LookupError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")


def content_type_values(field_name: str, value: str, option: str,
                        params: tuple[str, ...] = ()) -> list[str]:
    """What `header :mime <option>` sees in one field (RFC 5703 §4.2).

    Args:
        field_name: the field's name (lower case).
        value: the decoded field value.
        option: ":type", ":subtype", ":contenttype" or ":param".
        params: the parameter names for ":param" (lower case).

    Returns:
        The strings to match; [""] when the field has nothing of the kind.
    """
    text = _strip_comments(value)
    if option == ":param":
        if field_name == "content-type":
            head = _TYPE.match(text)
        elif field_name == "content-disposition":
            head = _DISPOSITION.match(text)
        else:
            return [""]
        if head is None:
            return [""]
        found = [v for n, v in parse_params(text[head.end():]) if n in params]
        return found or [""]
    if field_name != "content-type":
        return [""]
    m = _TYPE.match(text)
    if m is None or not (m.end() == len(text) or text[m.end()] == ";"):
        return [""]
    kind, sub = m.group(1), m.group(2)
    return [{":type": kind, ":subtype": sub, ":contenttype": f"{kind}/{sub}"}[option]]


# -- the tests with :mime -----------------------------------------------------------------

def _run_header(ctx: Any, call: Call) -> bool:
    names = [n for n in ctx.strings(call.args[0]) if valid_field_name(n)]
    keys = ctx.strings(call.args[1])
    option = call.groups.get("mime-option")
    params = tuple(p.lower() for p in ctx.strings(call.tag(":param"))) \
        if option == ":param" else ()
    for part in _selected_parts(ctx, call):
        values: list[str] = []
        for name in names:
            found = indexed(call, part.header_values(name))
            if option is None:
                values.extend(found)
            else:
                for value in found:
                    values.extend(content_type_values(name.lower(), value, option, params))
        if match(ctx, call, values, keys):
            return True
    return False


def _delegate(original: CommandSpec) -> Any:
    """Run the core test (address, exists) on each selected part's header."""

    def run(ctx: Any, call: Call) -> bool:
        saved = ctx.message
        try:
            for part in _selected_parts(ctx, call):
                ctx.message = part_view(part)
                if original.run(ctx, call):  # type: ignore[misc]
                    return True
            return False
        finally:
            ctx.message = saved

    return run


def _check_mime(call: Call, compiler: Any) -> Call:
    """`:mime` given: run the command on MIME parts (RFC 5703 §4.1)."""
    run = _run_header if call.name == "header" else _delegate(call.spec)
    return compiler.replace(call, spec=replace(call.spec, run=run))


def _check_needs_mime(call: Call, compiler: Any) -> None:
    """`:anychild` and the type options only make sense with `:mime` (RFC 5703 §4)."""
    if ":mime" not in call.tags:
        used = next(t for t in (":anychild", *TYPE_OPTIONS) if t in call.tags)
        compiler.error("bad-argument", f"{used} needs :mime on '{call.name}' (RFC 5703 §4)")


EXTENSION = Extension(
    name="mime",
    tags=(
        TagSpec(":mime", commands=MIME_COMMANDS, extension="mime", check=_check_mime),
        TagSpec(":anychild", commands=MIME_COMMANDS, extension="mime",
                check=_check_needs_mime),
        TagSpec(":type", commands=("header",), group="mime-option", extension="mime",
                check=_check_needs_mime),
        TagSpec(":subtype", commands=("header",), group="mime-option", extension="mime",
                check=_check_needs_mime),
        TagSpec(":contenttype", commands=("header",), group="mime-option",
                extension="mime", check=_check_needs_mime),
        TagSpec(":param", arg="stringlist", commands=("header",), group="mime-option",
                extension="mime", check=_check_needs_mime),
    ),
)
