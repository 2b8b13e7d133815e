"""spamtest — RFC 5235 §3.1, §3.2.1 (the spamtest test without `:percent`); the scoring
shared with spamtestplus (§3.2.2, `spamtestplus.py`) and virustest (§3.3, `virustest.py`).

`spamtest [:percent] [COMPARATOR] [MATCH-TYPE] <value: string>` matches one string: the
message's spam score, computed from a header the administrator names, as Pigeonhole does
(its `sieve_spamtest_status_header`/`max_value`, "score" status type):

- `Environment.spamtest_header` is `Header-Name: regex` (`MDA_SPAMTEST_HEADER`); the first
  field of that name (RFC 2047 decoded) is searched with the regex and group 1 is the
  score, a decimal (sign, at most 5 digits before and after a `.` or `,`). Without
  `: regex` the whole value is the score. `Environment.spamtest_max` (`MDA_SPAMTEST_MAX`)
  is the score that means "certainly spam".
- ratio = score / max, clamped to 0..1 (a negative score is 0). spamtest gives
  `int(ratio × 9 + 1.001)`, i.e. "1".."10"; with `:percent` `int(ratio × 100 + 0.001)`,
  "0".."100" (the arithmetic is done in 32-bit floats as Pigeonhole does, so values on a
  boundary round the same way).
- "0" means "not tested" (§3.2.1): no header configured, the field is missing, the regex
  does not match, or the score does not parse.

The default comparator is i;ascii-casemap, as in every other test (§3.1); numeric
comparisons need `:comparator "i;ascii-numeric"` with `:value`/`:count`. `require
"spamtestplus"` makes spamtest available too (§3.2.2). Complete.
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache
from typing import Any

from mda.sieve.common import match, validate_match
from mda.sieve.spec import Call, CommandSpec, Extension

_DECIMAL = re.compile(r"([+-]?)(\d{0,5})(?:[.,](\d{0,5}))?\Z")


def _f32(value: float) -> float:
    """Round to a 32-bit float (Pigeonhole computes scores in C floats)."""
    return struct.unpack("f", struct.pack("f", value))[0]


@lru_cache(maxsize=32)
def parse_header_spec(spec: str) -> tuple[str, re.Pattern[str] | None]:
    """Split a `Header-Name: regex` setting.

    Args:
        spec: e.g. `X-Spam-Score: score=(-?[0-9]+(\\.[0-9]+)?)`; a bare name uses the
            whole field value.

    Returns:
        (header name, compiled regex or None).

    Raises:
        ValueError: an empty name, or a regex that does not compile.
    """
    name, colon, pattern = spec.strip().partition(":")
    name = name.strip()
    if not name or any(ch in name for ch in " \t"):
        raise ValueError(f"invalid header specification {spec!r}: expected "
                         "'Header-Name: regex'")
    pattern = pattern.strip()
    if not colon or not pattern:
        return name, None
    try:
        return name, re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r} in {spec!r}: {exc}") \
            from None


def parse_decimal(text: str) -> float | None:
    """A status value as Pigeonhole reads it, or None if it is not a decimal."""
    m = _DECIMAL.match(text)
    if m is None or text == "":
        return None
    value = 0.0
    for digit in m.group(2):
        value = _f32(value * 10 + int(digit))
    radix = 0.1
    for digit in m.group(3) or "":
        value = _f32(value + int(digit) * _f32(radix))
        radix = _f32(radix / 10)
    return -value if m.group(1) == "-" else value


def status_text(ctx: Any, spec: str) -> str | None:
    """The status string selected by a header specification, or None if absent."""
    if not spec:
        return None
    try:
        name, pattern = parse_header_spec(spec)
    except ValueError as exc:
        ctx.warn(f"spamtest/virustest not configured: {exc}")
        return None
    values = ctx.message.header_values(name)
    if not values:
        return None
    if pattern is None:
        return values[0]
    m = pattern.search(values[0])
    if m is None or m.lastindex is None or m.group(1) is None:
        return None
    return m.group(1)


def ratio_of(status: float, maximum: float) -> float:
    """The score as a fraction of the maximum, clamped to 0..1 (RFC 5235 §3.2)."""
    if status < 0:
        return 0.0
    if status > maximum:
        return 1.0
    return _f32(status / _f32(maximum))


def score_text(ratio: float | None, scale: int, offset: float) -> str:
    """`int(ratio × scale + offset)` as text; "0" when not tested (ratio None)."""
    if ratio is None:
        return "0"
    return str(int(_f32(ratio * scale) + offset))


def spam_ratio(ctx: Any) -> float | None:
    """The configured spam score as a ratio, or None when the message was not tested."""
    env = ctx.environment
    text = status_text(ctx, env.spamtest_header)
    if text is None or env.spamtest_max <= 0:
        return None
    status = parse_decimal(text)
    if status is None:
        return None
    return ratio_of(status, env.spamtest_max)


def _validate(call: Call, compiler: Any) -> Call:
    if not (compiler.has("spamtest") or compiler.has("spamtestplus")):
        compiler.need("spamtest", "'spamtest'")
    return validate_match(call, compiler)


def _run(ctx: Any, call: Call) -> bool:
    ratio = spam_ratio(ctx)
    if call.tag(":percent"):
        value = score_text(ratio, 100, 0.001)
    else:
        value = score_text(ratio, 9, 1.001)
    return match(ctx, call, [value], [ctx.string(call.args[0])])


EXTENSION = Extension(
    name="spamtest",
    commands=(CommandSpec("spamtest", "test", ("string",),
                          groups=("comparator", "match-type"), validate=_validate,
                          run=_run),),
)
