"""Sieve string and number literals (RFC 5228 §2.4) and variable templates (RFC 5229 §3).

- Quoted strings: `\\"` and `\\\\` are escapes; any other `\\X` stands for X (§2.4.2:
  "undefined escape sequences ... SHOULD be interpreted as if there were no backslash").
  A line break inside the quotes is CRLF whatever the script file uses (§2.4.2 / §8.1).
- `text:` strings: the rest of the `text:` line may only hold white space or a `#`
  comment; lines starting with ".." lose one dot; every line ends in CRLF.
- Numbers: decimal with an optional K, M or G multiplier (2^10, 2^20, 2^30; §2.4.1).
- Encoded characters (RFC 5228 §2.4.2.4): `${hex:...}` and `${unicode:...}`, decoded at
  compile time when "encoded-character" is required; a malformed one is left as written.
- Templates: with "variables", a string containing `${name}` or `${N}` becomes a
  `Template` expanded at run time, exactly once (RFC 5229 §3: no re-expansion).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MULTIPLIERS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MAX_NUMBER = (1 << 63) - 1

_ENCODED = re.compile(r"\$\{(hex|unicode):([^}]*)\}", re.I)
_BLANKS = re.compile(r"[ \t\r\n]+")
_VARREF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*|[0-9]+)\}")


class LiteralError(ValueError):
    """A literal is invalid; the message names the rule broken."""


def decode_quoted(raw: str) -> str:
    """Decode a quoted-string token (with its quotes)."""
    body = raw[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(body[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return _crlf("".join(out))


def _crlf(text: str) -> str:
    return re.sub(r"\r?\n", "\r\n", text)


def decode_multiline(raw: str) -> str:
    """Decode a `text:` token (from "text:" to the final ".").

    Raises:
        LiteralError: something other than white space or a comment follows `text:`.
    """
    first_nl = raw.index("\n")
    head = raw[len("text:"):first_nl].rstrip("\r")
    if head.strip(" \t") and not head.strip(" \t").startswith("#"):
        raise LiteralError("only white space or a '#' comment may follow 'text:' "
                           "(RFC 5228 §8.1)")
    body = raw[first_nl + 1:]
    lines = body.split("\n")[:-1]  # drop the final "." line
    out = []
    for line in lines:
        line = line[:-1] if line.endswith("\r") else line
        if line.startswith(".."):
            line = line[1:]
        out.append(line + "\r\n")
    return "".join(out)


def parse_number(raw: str) -> int:
    """Decode a number token such as `100K` (RFC 5228 §2.4.1).

    Raises:
        LiteralError: the value does not fit in 63 bits.
    """
    mult = _MULTIPLIERS.get(raw[-1].lower(), 1)
    digits = raw[:-1] if mult != 1 else raw
    value = int(digits) * mult
    if value > MAX_NUMBER:
        raise LiteralError(f"number {raw} is too large (RFC 5228 §2.4.1)")
    return value


def decode_encoded_characters(text: str) -> str:
    """Replace `${hex:..}` and `${unicode:..}` (RFC 5228 §2.4.2.4).

    Raises:
        LiteralError: the octets are not UTF-8, or a code point is a surrogate or
            above U+10FFFF.
    """
    if "${" not in text:
        return text
    out = bytearray()
    pos = 0
    for m in _ENCODED.finditer(text):
        kind = m.group(1).lower()
        items = [t for t in _BLANKS.split(m.group(2)) if t]
        limit = 2 if kind == "hex" else 6
        if not all(re.fullmatch(rf"[0-9A-Fa-f]{{1,{limit}}}", t)
                                for t in items):
            continue  # malformed: left as written
        out += text[pos:m.start()].encode("utf-8", "surrogatepass")
        if kind == "hex":
            out += bytes(int(t, 16) for t in items)
        else:
            for t in items:
                cp = int(t, 16)
                if 0xD800 <= cp <= 0xDFFF or cp > 0x10FFFF:
                    raise LiteralError(f"invalid Unicode character U+{cp:X} in "
                                       "${unicode:...} (RFC 5228 §2.4.2.4)")
                out += chr(cp).encode("utf-8")
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogatepass")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise LiteralError("${hex:...} does not give valid UTF-8 "
                           "(RFC 5228 §2.4.2.4)") from None


@dataclass(frozen=True, slots=True)
class VarRef:
    """A variable reference in a template.

    Attributes:
        name: lower-cased variable name, or the digits of a match variable.
        namespace: lower-cased namespace ("" for none, "global" for RFC 6609).
    """

    name: str
    namespace: str = ""

    @property
    def is_match(self) -> bool:
        """True for `${N}` match variables (RFC 5229 §3.2)."""
        return self.name.isdigit()


@dataclass(frozen=True, slots=True)
class Template:
    """A string with variable references, expanded at run time (RFC 5229 §3).

    Attributes:
        parts: literal strings and `VarRef`s in order.
        source: the string as written (after encoded-character decoding).
    """

    parts: tuple[str | VarRef, ...]
    source: str

    def __str__(self) -> str:
        return self.source


def parse_template(text: str, namespaces: frozenset[str] = frozenset()) -> str | Template:
    """Turn a string into a Template if it references variables.

    A reference to an unknown namespace is kept as literal text.

    Returns:
        The plain string when there is nothing to expand, else a Template.
    """
    if "${" not in text:
        return text
    parts: list[str | VarRef] = []
    pos = 0
    for m in _VARREF.finditer(text):
        name = m.group(1).lower()
        namespace = ""
        if "." in name:
            namespace, _, name = name.rpartition(".")
            if namespace not in namespaces:
                continue
        parts.append(text[pos:m.start()])
        parts.append(VarRef(name, namespace))
        pos = m.end()
    if not parts:
        return text
    parts.append(text[pos:])
    return Template(tuple(p for p in parts if p != ""), text)
