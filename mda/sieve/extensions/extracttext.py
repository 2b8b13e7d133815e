"""extracttext — RFC 5703 §7 (`extracttext [MODIFIER...] [:first <number>] <varname>`).

Stores the text of the MIME part `foreverypart` is visiting into a variable: the body
after Content-Transfer-Encoding decoding and conversion from its charset; text/html is
turned into plain text (tags dropped, entities decoded, script and style left out, a block
element becomes a space, as Pigeonhole does); a multipart or message/rfc822 part gives
the empty string. The `set` modifiers (:lower, :upper, :lowerfirst, :upperfirst,
:quotewildcard, :quoteregex, :length, and :encodeurl with enotify) apply as for `set`
(RFC 5229 §4.1) after `:first`. It needs "variables", and it must be used inside a
foreverypart loop (compile error otherwise, §7).

Deviation (RFC 5703 §7 over Pigeonhole): `:first N` keeps the first N *characters*;
Pigeonhole counts octets and can cut a UTF-8 character in half (conformance case 306).
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from mda.sieve.extensions.foreverypart import loops_around
from mda.sieve.extensions.mime import current_part
from mda.sieve.extensions.variables import assign, check_target, modify
from mda.sieve.message import MimePart
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec

#: elements whose start or end separates text (rendered as one space)
_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "body", "br", "dd", "div", "dl", "dt",
    "fieldset", "head", "html",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "title",
    "tr", "ul",
})
_SKIP = frozenset({"script", "style"})


class _HTMLText(HTMLParser):
    """Collects the text of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skipping = 0

    def _separate(self) -> None:
        if self.out and not self.out[-1].endswith(" "):
            self.out.append(" ")

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self._separate()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self._separate()

    def handle_data(self, data: str) -> None:
        if not self.skipping and data:
            self.out.append(data.replace("\xa0", " "))


def html_to_text(html: str) -> str:
    """The plain text of an HTML body (see the module docstring)."""
    parser = _HTMLText()
    parser.feed(html.replace("\r\n", "\n"))
    parser.close()
    return "".join(parser.out)


def part_text(part: MimePart) -> str:
    """The text extracttext stores for one part."""
    if part.is_multipart or part.content_type == "message/rfc822":
        return ""
    if part.content_type == "text/html":
        return html_to_text(part.text())
    return part.text()


def _validate(call: Call, compiler: Any) -> Call:
    if not loops_around(compiler):
        compiler.error("syntax", "extracttext is only allowed inside foreverypart "
                       "(RFC 5703 §7)")
    compiler.need("variables", "'extracttext'")
    check_target(compiler, call.args[0], "extracttext", "RFC 5703 §7")
    return call


def _run(ctx: Any, call: Call) -> None:
    value = part_text(current_part(ctx))
    first = call.tag(":first")
    if first is not None:
        value = value[:first]
    assign(ctx, call.args[0], modify(call, value))


EXTENSION = Extension(
    name="extracttext",
    commands=(CommandSpec("extracttext", "command", ("string",), extension="extracttext",
                          validate=_validate, run=_run),),
    tags=(
        TagSpec(":first", arg="number", commands=("extracttext",), extension="extracttext"),
        TagSpec(":lower", commands=("extracttext",), group="case40"),
        TagSpec(":upper", commands=("extracttext",), group="case40"),
        TagSpec(":lowerfirst", commands=("extracttext",), group="case30"),
        TagSpec(":upperfirst", commands=("extracttext",), group="case30"),
        TagSpec(":quotewildcard", commands=("extracttext",), group="quote20"),
        TagSpec(":quoteregex", commands=("extracttext",), group="quote15", extension="regex"),
        TagSpec(":length", commands=("extracttext",), group="length10"),
        TagSpec(":encodeurl", commands=("extracttext",), group="quote15",
                extension="enotify"),
    ),
)
