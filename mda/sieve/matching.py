"""Comparators (RFC 4790, RFC 5228 §2.7.3) and match types (RFC 5228 §2.7.1).

A comparator turns a string into the form it compares: `i;octet` and `i;ascii-casemap`
work on the UTF-8 octets (so `?` in `:matches` is one octet, as in Pigeonhole and RFC 4790
§9.3), `i;unicode-casemap` (RFC 5051) on characters, `i;ascii-numeric` (RFC 4790 §9.1) on
the leading digits.

`glob` implements `:matches`: `*` matches any sequence, `?` one unit, `\\` quotes the next
character. It is linear in practice (each `*` commits to the leftmost position where the
following fixed segment matches, which is also the "match as little as possible" choice
RFC 5229 §3.2 describes for match variables) and never backtracks exponentially.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

INFINITY = float("inf")


@dataclass(frozen=True, slots=True)
class Comparator:
    """One collation.

    Attributes:
        name: the IANA name, e.g. "i;ascii-casemap".
        substring: whether :contains and :matches are allowed (RFC 4790 §4.2.2).
    """

    name: str
    substring: bool = True

    def units(self, text: str) -> Sequence:
        """The sequence the comparator matches on (bytes or str), same length as `raw`."""
        data = text.encode("utf-8", errors="surrogateescape")
        if self.name == "i;ascii-casemap":
            return data.lower()
        if self.name == "i;unicode-casemap":
            return _unicode_fold(text)
        return data

    def raw(self, text: str) -> Sequence:
        """The un-folded units, for returning captured substrings."""
        if self.name == "i;unicode-casemap":
            return _unicode_fold_raw(text)
        return text.encode("utf-8", errors="surrogateescape")

    def order_key(self, text: str) -> float | Sequence:
        """The value compared by :value and :is (RFC 5231 §4, RFC 4790 §9.1.1)."""
        if self.name == "i;ascii-numeric":
            digits = ""
            for ch in text:
                if not ("0" <= ch <= "9"):
                    break
                digits += ch
            return int(digits) if digits else INFINITY
        if self.name == "i;unicode-casemap":
            return unicodedata.normalize("NFKD", text.casefold())
        return self.units(text)

    def equals(self, value: str, key: str) -> bool:
        """RFC 5228 §2.7.1 :is."""
        return self.order_key(value) == self.order_key(key)

    def compare(self, value: str, key: str) -> int:
        """Ordering used by relational :value: -1, 0 or 1."""
        a, b = self.order_key(value), self.order_key(key)
        if type(a) is not type(b) and not isinstance(a, (int, float)):
            a, b = bytes(a), bytes(b)  # pragma: no cover - both from the same comparator
        return (a > b) - (a < b)

    def contains(self, value: str, key: str) -> bool:
        """RFC 5228 §2.7.1 :contains."""
        return _find(self.units(value), self.units(key), 0) >= 0

    def matches(self, value: str, pattern: str) -> list[str] | None:
        """RFC 5228 §2.7.1 :matches; returns the wildcard captures or None.

        Returns:
            None when there is no match; otherwise the substrings matched by each wildcard
            in order (RFC 5229 §3.2 match variables ${1}..).
        """
        items = _parsed_pattern(pattern, self)
        spans = glob(self.units(value), items)
        if spans is None:
            return None
        raw = self.raw(value)
        return [_text(raw[a:b]) for a, b in spans]


def _unicode_fold(text: str) -> str:
    # RFC 5051 §2 folds case per character; keeping one unit per input character lets
    # :matches return the original substrings as match variables.
    return "".join(_fold_char(ch) for ch in text)


def _fold_char(ch: str) -> str:
    folded = ch.casefold()
    return folded if len(folded) == 1 else ch.lower()[:1] or ch


def _unicode_fold_raw(text: str) -> str:
    return text


def _text(units: Sequence) -> str:
    if isinstance(units, (bytes, bytearray)):
        return bytes(units).decode("utf-8", errors="surrogateescape")
    return str(units)


COMPARATORS: dict[str, Comparator] = {
    "i;octet": Comparator("i;octet"),
    "i;ascii-casemap": Comparator("i;ascii-casemap"),
    "i;ascii-numeric": Comparator("i;ascii-numeric", substring=False),
    "i;unicode-casemap": Comparator("i;unicode-casemap"),
}

STAR = object()
ANY = object()


def parse_pattern(pattern: str, comparator: Comparator) -> list:
    """Split a :matches key into literal unit runs, `ANY` (`?`) and `STAR` (`*`).

    A backslash makes the next character literal (RFC 5228 §2.7.1: "\\" quotes "*", "?"
    and itself).
    """
    items: list = []
    literal = ""

    def flush() -> None:
        nonlocal literal
        if literal:
            items.append(comparator.units(literal))
            literal = ""

    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            literal += pattern[i + 1]
            i += 2
            continue
        if ch == "*":
            flush()
            items.append(STAR)
        elif ch == "?":
            flush()
            items.append(ANY)
        else:
            literal += ch
        i += 1
    flush()
    return items


@lru_cache(maxsize=2048)
def _parsed_pattern(pattern: str, comparator: Comparator) -> tuple:
    """`parse_pattern`, cached: a script's keys are matched against every message."""
    return tuple(parse_pattern(pattern, comparator))


def _find(hay: Sequence, needle: Sequence, start: int) -> int:
    if isinstance(hay, str) and isinstance(needle, str):
        return hay.find(needle, start)
    return bytes(hay).find(bytes(needle), start)


def _segment_at(value: Sequence, seg: list, pos: int) -> bool:
    """Does the fixed segment (literals and ANY) match value at pos?"""
    for item in seg:
        if item is ANY:
            if pos >= len(value):
                return False
            pos += 1
        else:
            if value[pos:pos + len(item)] != item:
                return False
            pos += len(item)
    return True


def _seg_len(seg: list) -> int:
    return sum(1 if item is ANY else len(item) for item in seg)


def _seg_find(value: Sequence, seg: list, start: int) -> int:
    """Leftmost position >= start where the fixed segment matches, or -1."""
    if not seg:
        return start
    first_lit = next((i for i, it in enumerate(seg) if it is not ANY), None)
    pos = start
    limit = len(value) - _seg_len(seg)
    while pos <= limit:
        if first_lit is not None:
            offset = sum(1 if it is ANY else len(it) for it in seg[:first_lit])
            found = _find(value, seg[first_lit], pos + offset)
            if found < 0:
                return -1
            pos = found - offset
            if pos > limit:
                return -1
        if _segment_at(value, seg, pos):
            return pos
        pos += 1
    return -1


def _seg_spans(seg: list, pos: int) -> list[tuple[int, int]]:
    spans = []
    for item in seg:
        if item is ANY:
            spans.append((pos, pos + 1))
            pos += 1
        else:
            pos += len(item)
    return spans


def glob(value: Sequence, items: list) -> list[tuple[int, int]] | None:
    """Match `value` against parsed pattern items.

    Returns:
        The spans (start, end) matched by each `*` and `?` in order, or None.
    """
    segments: list[list] = [[]]
    for item in items:
        if item is STAR:
            segments.append([])
        else:
            segments[-1].append(item)
    if len(segments) == 1:
        seg = segments[0]
        if _seg_len(seg) != len(value) or not _segment_at(value, seg, 0):
            return None
        return _seg_spans(seg, 0)
    first, middle, last = segments[0], segments[1:-1], segments[-1]
    if not _segment_at(value, first, 0):
        return None
    spans = _seg_spans(first, 0)
    pos = _seg_len(first)
    end_start = len(value) - _seg_len(last)
    if end_start < pos:
        return None
    for seg in middle:
        found = _seg_find(value, seg, pos)
        if found < 0 or found + _seg_len(seg) > end_start:
            return None
        spans.append((pos, found))
        spans.extend(_seg_spans(seg, found))
        pos = found + _seg_len(seg)
    if not _segment_at(value, last, end_start):
        return None
    spans.append((pos, end_start))
    spans.extend(_seg_spans(last, end_start))
    return spans
