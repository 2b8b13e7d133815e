"""RFC 5322 §3.4 address lists, as the Sieve `address` test needs them (RFC 5228 §5.1).

`parse_address_list` returns one entry per mailbox in a header value: groups are flattened
into their members (the group name is not an address), comments and display names are
dropped, routes in angle addresses are ignored. A mailbox that cannot be parsed gives
`None`, which matches nothing (RFC 5228 §2.7.4 lets implementations choose; Pigeonhole
does the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

_SPECIALS = set('()<>[]:;@\\,."')


@dataclass(frozen=True, slots=True)
class Address:
    """One parsed mailbox address.

    Attributes:
        local: the local part, unquoted.
        domain: the domain as written.
    """

    local: str
    domain: str

    @property
    def all(self) -> str:
        """`local@domain` (RFC 5228 §2.7.4 :all)."""
        return f"{self.local}@{self.domain}"


def _tokens(text: str) -> list[tuple[str, str]] | None:
    """Lex into (kind, value): atom, quoted, literal, or a special character; None if broken."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            if i >= n:
                return None
            i += 1
        elif ch == '"':
            j = i + 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                return None
            out.append(("quoted", "".join(buf)))
            i = j + 1
        elif ch == "[":
            j = text.find("]", i)
            if j < 0:
                return None
            out.append(("literal", text[i:j + 1]))
            i = j + 1
        elif ch in _SPECIALS:
            out.append((ch, ch))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in " \t\r\n":
                j += 1
            out.append(("atom", text[i:j]))
            i = j
    return out


def _addr_spec(tokens: list[tuple[str, str]]) -> Address | None:
    at = [i for i, t in enumerate(tokens) if t[0] == "@"]
    if len(at) != 1:
        return None
    local_toks, domain_toks = tokens[:at[0]], tokens[at[0] + 1:]
    if not local_toks or not domain_toks:
        return None
    local = ""
    for kind, value in local_toks:
        if kind not in ("atom", "quoted", "."):
            return None
        local += value
    domain = ""
    for kind, value in domain_toks:
        if kind not in ("atom", "literal", "."):
            return None
        domain += value
    if not domain or domain.startswith(".") or domain.endswith("."):
        return None
    return Address(local, domain)


def _mailbox(tokens: list[tuple[str, str]]) -> Address | None:
    kinds = [k for k, _ in tokens]
    if "<" in kinds:
        start = kinds.index("<")
        if ">" not in kinds[start:]:
            return None
        end = start + kinds[start:].index(">")
        inner = tokens[start + 1:end]
        if any(k == ":" for k, _ in inner):  # obsolete route: @a,@b:local@domain
            inner = inner[[k for k, _ in inner].index(":") + 1:]
        return _addr_spec(inner)
    return _addr_spec(tokens)


def parse_address_list(text: str) -> list[Address | None]:
    """Parse an RFC 5322 address list (address-list / mailbox-list, §3.4).

    Results are cached by the text (the same header is usually tested by many rules).

    Args:
        text: the unfolded header value.

    Returns:
        One entry per mailbox (group members included); None for a mailbox that does not
        parse. An empty group or an empty value gives no entries.
    """
    return list(_parse_address_list(text))


@lru_cache(maxsize=1024)
def _parse_address_list(text: str) -> tuple[Address | None, ...]:
    tokens = _tokens(text)
    if tokens is None:
        return [None]
    result: list[Address | None] = []
    current: list[tuple[str, str]] = []
    angle = 0
    for kind, value in tokens:
        if kind == "<":
            angle += 1
        elif kind == ">":
            angle = max(0, angle - 1)
        if angle == 0 and kind == ":" and not any(k == "@" for k, _ in current):
            current = []  # group display name ends: members follow
            continue
        if angle == 0 and kind in (",", ";"):
            if current:
                result.append(_mailbox(current))
            current = []
            continue
        current.append((kind, value))
    if current:
        result.append(_mailbox(current))
    return tuple(result)


def parse_address(text: str) -> Address | None:
    """Parse a single address such as an envelope address (RFC 5321 §4.1.2 path).

    Args:
        text: `local@domain`, optionally in angle brackets.

    Returns:
        The address, or None when it does not parse (including the null path `<>`).
    """
    entries = parse_address_list(text)
    if len(entries) != 1:
        return None
    return entries[0]
