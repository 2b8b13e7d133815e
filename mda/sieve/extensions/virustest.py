"""virustest — RFC 5235 §3.3: `virustest [COMPARATOR] [MATCH-TYPE] <value: string>`.

Configured like Pigeonhole's "text" status type: `Environment.virustest_header`
(`MDA_VIRUSTEST_HEADER`, `Header-Name` or `Header-Name: regex` whose group 1 is the
status) and `Environment.virustest_text_values` (`MDA_VIRUSTEST_TEXT_VALUES`, e.g.
`1=clean,3=suspicious,5=infected`): the status text that equals (case-sensitively) the
text given for N has the ratio N/5, and the test value is `int(ratio × 4 + 1.001)`,
"1".."5" (§3.3: 1 no virus ... 5 definitely infected). "0" means not tested (§3.3): not
configured, the field missing, or a status that is none of the configured texts.
Complete.
"""

from __future__ import annotations

from typing import Any

from mda.sieve.common import match, validate_match
from mda.sieve.extensions.spamtest import ratio_of, score_text, status_text
from mda.sieve.spec import Call, CommandSpec, Extension

MAX_VALUE = 5


def parse_text_values(text: str) -> tuple[tuple[int, str], ...]:
    """Parse `N=text,N=text` (N in 0..5) as `MDA_VIRUSTEST_TEXT_VALUES` holds it.

    Returns:
        (N, text) pairs in the order given.

    Raises:
        ValueError: an entry without `=`, or N that is not a number from 0 to 5.
    """
    pairs: list[tuple[int, str]] = []
    for entry in text.split(","):
        if not entry.strip():
            continue
        number, equals, value = entry.partition("=")
        number = number.strip()
        if not equals or not number.isdigit() or int(number) > MAX_VALUE:
            raise ValueError(f"invalid virustest text value {entry.strip()!r}: expected "
                             f"N=text with N from 0 to {MAX_VALUE}")
        pairs.append((int(number), value.strip()))
    return tuple(pairs)


def virus_ratio(ctx: Any) -> float | None:
    """The configured virus status as a ratio of 5, or None when not tested."""
    env = ctx.environment
    if not env.virustest_text_values:
        return None
    status = status_text(ctx, env.virustest_header)
    if status is None:
        return None
    for number, text in sorted(env.virustest_text_values):
        if text == status:
            return ratio_of(float(number), float(MAX_VALUE))
    return None


def _run(ctx: Any, call: Call) -> bool:
    value = score_text(virus_ratio(ctx), 4, 1.001)
    return match(ctx, call, [value], [ctx.string(call.args[0])])


EXTENSION = Extension(
    name="virustest",
    commands=(CommandSpec("virustest", "test", ("string",),
                          groups=("comparator", "match-type"), extension="virustest",
                          validate=validate_match, run=_run),),
)
