"""relational — RFC 5231 (§4 match types :count and :value, §5 the operators).

`:value "op"` compares each value with each key through the comparator's ordering;
`:count "op"` compares the number of values (header fields, addresses, envelope parts,
non-empty strings) with the keys. Operators: gt, ge, lt, le, eq, ne; anything else is a
compile error (§5). Complete.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from mda.sieve.matching import Comparator
from mda.sieve.spec import Call, Extension, TagSpec
from mda.sieve.strings import Template

OPERATORS = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
             "eq": operator.eq, "ne": operator.ne}


def _op(call: Call, tag: str) -> Any:
    return OPERATORS.get(str(call.tag(tag)).lower(), operator.eq)


def _value(ctx: Any, call: Call, comparator: Comparator, values: Sequence[str],
           keys: Sequence[str]) -> bool:
    op = _op(call, ":value")
    return any(op(comparator.compare(v, k), 0) for v in values for k in keys)


def _count(ctx: Any, call: Call, comparator: Comparator, values: Sequence[str],
           keys: Sequence[str]) -> bool:
    op = _op(call, ":count")
    count = str(len(values))
    return any(op(comparator.compare(count, k), 0) for k in keys)


def validate_operator(call: Call, compiler: Any) -> None:
    """Compile-time check of the relational operator (RFC 5231 §5)."""
    for tag in (":value", ":count"):
        value = call.tag(tag)
        if value is not None and (isinstance(value, Template)
                                  or value.lower() not in OPERATORS):
            compiler.error("bad-value", f"{tag} \"{value}\": the relational operator must "
                           "be one of gt, ge, lt, le, eq, ne (RFC 5231 §5)")


EXTENSION = Extension(
    name="relational",
    tags=(
        TagSpec(":value", arg="string", group="match-type", extension="relational",
                impl=_value, check=validate_operator),
        TagSpec(":count", arg="string", group="match-type", extension="relational",
                impl=_count, check=validate_operator),
    ),
)
