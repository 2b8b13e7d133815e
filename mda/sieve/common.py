"""What tests share: comparator, match-type and address-part arguments (RFC 5228 §2.7).

- `:comparator NAME` (§2.7.3): i;octet and i;ascii-casemap (the default) are always
  available; others need `require "comparator-NAME"`.
- Match types (§2.7.1): `:is` (default), `:contains`, `:matches`; extensions add more
  (relational `:count`/`:value`, regex `:regex`) as tags of the same group whose `impl`
  is the matcher. A comparator without substring operations refuses `:contains` and
  `:matches` at compile time (RFC 4790 §4.2.2).
- Address parts (§2.7.4): `:all` (default), `:localpart`, `:domain`; subaddress adds
  `:user` and `:detail`.

`match(ctx, call, values, keys)` is the one routine every matching test ends in; a
successful `:matches` sets the match variables (RFC 5229 §3.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mda.sieve.addresses import Address
from mda.sieve.matching import COMPARATORS, Comparator
from mda.sieve.registry import REGISTRY
from mda.sieve.spec import Call, TagSpec
from mda.sieve.strings import Template

Matcher = Callable[[Any, Call, Comparator, Sequence[str], Sequence[str]], bool]


def _is(ctx: Any, call: Call, comparator: Comparator, values: Sequence[str],
        keys: Sequence[str]) -> bool:
    return any(comparator.equals(v, k) for v in values for k in keys)


def _contains(ctx: Any, call: Call, comparator: Comparator, values: Sequence[str],
              keys: Sequence[str]) -> bool:
    return any(comparator.contains(v, k) for v in values for k in keys)


def _matches(ctx: Any, call: Call, comparator: Comparator, values: Sequence[str],
             keys: Sequence[str]) -> bool:
    for value in values:
        for key in keys:
            captures = comparator.matches(value, key)
            if captures is not None:
                ctx.set_match_values([value, *captures])
                return True
    return False


MATCH_TAGS = (
    TagSpec(":is", group="match-type", impl=_is),
    TagSpec(":contains", group="match-type", impl=_contains),
    TagSpec(":matches", group="match-type", impl=_matches),
)
COMPARATOR_TAG = TagSpec(":comparator", arg="string", group="comparator")


def _part_all(ctx: Any, addr: Address) -> str | None:
    return addr.all


def _part_local(ctx: Any, addr: Address) -> str | None:
    return addr.local


def _part_domain(ctx: Any, addr: Address) -> str | None:
    return addr.domain


ADDRESS_PART_TAGS = (
    TagSpec(":all", group="address-part", impl=_part_all),
    TagSpec(":localpart", group="address-part", impl=_part_local),
    TagSpec(":domain", group="address-part", impl=_part_domain),
)

SUBSTRING_MATCH_TYPES = frozenset({":contains", ":matches"})


def validate_match(call: Call, compiler: Any) -> Call:
    """Resolve the comparator and check it against the match type (RFC 5228 §2.7.3).

    Raises:
        SieveCompileError: unknown or unrequired comparator, or a substring match type
            with a comparator that has no substring operation.
    """
    name = call.tag(":comparator", "i;ascii-casemap")
    if isinstance(name, Template):
        compiler.error("bad-value", "the comparator name must be a constant string")
    capability = REGISTRY.comparators.get(name, "")
    if name not in COMPARATORS or capability == "":
        compiler.error("bad-value", f"unknown comparator \"{name}\" (RFC 5228 §2.7.3)")
    compiler.need(capability, f"comparator \"{name}\"")
    comparator = COMPARATORS[name]
    match_type = call.groups.get("match-type", ":is")
    if match_type in SUBSTRING_MATCH_TYPES and not comparator.substring:
        compiler.error("bad-argument", f"comparator \"{name}\" cannot be used with "
                       f"{match_type} (RFC 4790 §4.2.2)")
    tag = REGISTRY.tag_for(call.name, match_type)
    matcher = tag.impl if tag is not None and tag.impl else _is
    return compiler.replace(call, data={**call.data, "comparator": comparator,
                                        "match_type": match_type, "matcher": matcher})


def indexed(call: Call, items: list[Any]) -> list[Any]:
    """Apply `:index N [:last]` (RFC 5260 §6) to the occurrences of one field."""
    index = call.tag(":index")
    if index is None:
        return items
    position = len(items) - index if call.tag(":last") else index - 1
    return [items[position]] if 0 <= position < len(items) else []


def check_constants(compiler: Any, values: Sequence[Any], allowed: frozenset[str] | tuple,
                    problem: str) -> None:
    """Fail at compile time when a constant (not a Template) is outside `allowed`.

    Args:
        problem: the message, with `{}` where the offending value goes.
    """
    for value in values:
        if isinstance(value, str) and value.lower() not in allowed:
            compiler.error("bad-value", problem.format(value))


def match(ctx: Any, call: Call, values: Sequence[str], keys: Sequence[str]) -> bool:
    """Apply the call's match type and comparator to values and keys.

    Args:
        ctx: the evaluation Context.
        call: a Call validated by `validate_match`.
        values: the strings found in the message/envelope.
        keys: the expanded key list.

    Returns:
        True if the test matches.
    """
    matcher: Matcher | None = call.data.get("matcher")  # resolved by validate_match
    if matcher is None:
        tag = REGISTRY.tag_for(call.name, call.data.get("match_type", ":is"))
        matcher = tag.impl if tag is not None and tag.impl else _is
    return matcher(ctx, call, call.data["comparator"], values, keys)


def address_part(ctx: Any, call: Call, addr: Address) -> str | None:
    """The part of an address the call's address-part tag selects (default :all)."""
    name = call.groups.get("address-part", ":all")
    tag = REGISTRY.tag_for(call.name, name)
    extract = tag.impl if tag is not None and tag.impl else _part_all
    return extract(ctx, addr)


def append_address_part(values: list[str], ctx: Any, call: Call, addr: Address) -> None:
    """Append the part of `addr` the test selects (RFC 5228 §2.7.4) to `values`.

    An address without that part (no `:detail`, say) adds nothing, except under `:count`,
    which counts addresses, not parts (RFC 5231 §4.1): then it adds "".
    """
    part = address_part(ctx, call, addr)
    if part is not None:
        values.append(part)
    elif call.data.get("match_type") == ":count":
        values.append("")
