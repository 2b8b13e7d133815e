"""date — RFC 5260 (§4 the date test, §5 the currentdate test, §4.2 date parts, §6 index).

`date [:zone Z / :originalzone] [COMPARATOR] [MATCH-TYPE] <header> <date-part> <keys>` tests a
date-time taken from a header field; `currentdate [:zone Z] ... <date-part> <keys>` tests
`Environment.now` (the engine never reads the clock).

- The header value is an RFC 5322 §3.3 date-time, read leniently like Dovecot's parser:
  optional day of week (recomputed, never trusted), 2-digit years (< 70 → 20xx, else 19xx,
  RFC 5322 §4.3), missing seconds, `:` or `.` in the time, second 60 read as 59, a missing
  or unknown zone read as +0000, the obsolete zone names (UT, GMT, EST ... and the military
  letters as Dovecot reads them), comments. For Received the date after the last `;` is used.
  A value that is not a valid date makes the test false.
- Without `:index` the first field of that name is used (§4.1); `:index N [:last]` (§6)
  selects another.
- `:zone "+hhmm"/"-hhmm"` converts to that offset (the four digits are read as hours and
  minutes without range checks, as Pigeonhole does: "+0160" is two hours). `:originalzone`
  keeps the header's own zone. With neither, the time is converted to the local time zone,
  `Environment.timezone` (an IANA name or "+hhmm"). An invalid `:zone` is a warning and the
  local zone is used; an unknown date part is a warning and the test is false (§4.2).
- Date parts (§4.2): year, month, day, date, julian (the Modified Julian Day), hour, minute,
  second, time, iso8601 (RFC 3339, "Z" for a zero offset), std11 (RFC 5322), zone, weekday
  (0 = Sunday). Date-part names are case-insensitive.

Deviation: none known. Complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mda.sieve.common import indexed, match, validate_match
from mda.sieve.spec import Call, CommandSpec, Extension, TagSpec

ZONE = re.compile(r"([+-])(\d\d)(\d\d)\Z")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: RFC 5322 §4.3 obsolete zone names, in minutes east of UTC
NAMED_ZONES = {"ut": 0, "gmt": 0, "z": 0, "edt": -240, "est": -300, "cdt": -300,
               "cst": -360, "mdt": -360, "mst": -420, "pdt": -420, "pst": -480}
MJD_EPOCH = date(1858, 11, 17)
_TOKEN = re.compile(r"[A-Za-z]+|\d+|[,:.+-]|\S")


def _military(letter: str) -> int | None:
    """Military one-letter zones, with the sign Dovecot (and most mailers) give them."""
    if letter in "abcdefghi":
        return (ord(letter) - ord("a") + 1) * 60
    if letter in "klm":
        return (ord(letter) - ord("a")) * 60
    if letter in "nopqrstuvwxy":
        return -(ord(letter) - ord("n") + 1) * 60
    return None


@dataclass(frozen=True, slots=True)
class Stamp:
    """A wall-clock date-time and the zone offset it is expressed in.

    Attributes:
        wall: the local date and time (naive).
        offset: minutes east of UTC.
    """

    wall: datetime
    offset: int

    @property
    def utc(self) -> datetime:
        """The same instant in UTC (naive)."""
        return self.wall - timedelta(minutes=self.offset)

    def shifted(self, offset: int) -> Stamp:
        """The same instant in another zone.

        Raises:
            OverflowError: the result leaves the years 1..9999.
        """
        return Stamp(self.utc + timedelta(minutes=offset), offset)


def _strip_comments(text: str) -> str:
    out: list[str] = []
    depth = 0
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
            continue
        if depth and ch == "\\":
            escaped = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            out.append(" ")
        elif not depth:
            out.append(ch)
    return "".join(out)


def _zone_minutes(token: str, rest: list[str]) -> int:
    """The offset of the zone tokens after the time; unknown or missing zones are 0."""
    if token in ("+", "-") and rest and len(rest[0]) == 4 and rest[0].isdigit():
        minutes = int(rest[0][:2]) * 60 + int(rest[0][2:])
        return -minutes if token == "-" else minutes
    lowered = token.lower()
    if lowered in NAMED_ZONES:
        return NAMED_ZONES[lowered]
    if len(lowered) == 1 and lowered.isalpha():
        return _military(lowered) or 0
    return 0


def parse_date(text: str) -> Stamp | None:
    """Parse an RFC 5322 §3.3 date-time leniently (see the module docstring).

    Args:
        text: the unfolded header value.

    Returns:
        The Stamp, or None when the value is not a valid date-time.
    """
    tokens = _TOKEN.findall(_strip_comments(text))
    i = 0
    if i < len(tokens) and tokens[i].isalpha():  # day of week: ignored
        i += 1
        if i < len(tokens) and tokens[i] == ",":
            i += 1
    try:
        day_s, month_s, year_s = tokens[i], tokens[i + 1], tokens[i + 2]
        hour_s, sep1, minute_s = tokens[i + 3], tokens[i + 4], tokens[i + 5]
    except IndexError:
        return None
    i += 6
    if not (day_s.isdigit() and len(day_s) <= 2 and year_s.isdigit()):
        return None
    if month_s[:3].lower() not in MONTHS or not month_s.isalpha():
        return None
    if sep1 not in (":", ".") or not all(len(t) == 2 and t.isdigit()
                                         for t in (hour_s, minute_s)):
        return None
    second = 0
    if i + 1 < len(tokens) and tokens[i] in (":", ".") and tokens[i + 1].isdigit():
        if len(tokens[i + 1]) != 2:
            return None
        second = min(int(tokens[i + 1]), 59)
        i += 2
    if len(year_s) == 2:
        year = int(year_s) + (2000 if int(year_s) < 70 else 1900)
    elif len(year_s) == 4 and int(year_s) >= 1000:
        year = int(year_s)
    else:
        return None
    offset = _zone_minutes(tokens[i], tokens[i + 1:]) if i < len(tokens) else 0
    try:
        wall = datetime(year, MONTHS.index(month_s[:3].lower()) + 1, int(day_s),
                        int(hour_s), int(minute_s), second)
    except ValueError:
        return None
    return Stamp(wall, offset)


def parse_zone(text: str) -> int | None:
    """A `:zone` argument ("+hhmm"/"-hhmm", RFC 5260 §4.1) in minutes, or None if invalid."""
    m = ZONE.match(text)
    if m is None:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return -minutes if m.group(1) == "-" else minutes


@lru_cache(maxsize=64)
def _zoneinfo(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_offset(ctx: Any, instant_utc: datetime) -> int:
    """The offset (minutes) of `Environment.timezone` at a UTC instant (naive)."""
    name = ctx.environment.timezone or "UTC"
    fixed = parse_zone(name)
    if fixed is not None:
        return fixed
    zone = _zoneinfo(name)
    if zone is None:
        ctx.warn(f"unknown local time zone \"{name}\"; using UTC")
        return 0
    aware = instant_utc.replace(tzinfo=timezone.utc).astimezone(zone)
    delta = aware.utcoffset()
    return int(delta.total_seconds() // 60) if delta is not None else 0


def _zone_text(offset: int, colon: bool = False) -> str:
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def _iso8601(s: Stamp) -> str:
    zone = "Z" if s.offset == 0 else _zone_text(s.offset, colon=True)
    return s.wall.strftime("%Y-%m-%dT%H:%M:%S") + zone


def _std11(s: Stamp) -> str:
    w = s.wall
    return (f"{DAY_NAMES[w.weekday()]}, {w.day:02d} {MONTHS[w.month - 1].capitalize()} "
            f"{w.year:04d} {w:%H:%M:%S} {_zone_text(s.offset)}")


#: RFC 5260 §4.2: date part → its text
DATE_PARTS = {
    "year": lambda s: f"{s.wall.year:04d}",
    "month": lambda s: f"{s.wall.month:02d}",
    "day": lambda s: f"{s.wall.day:02d}",
    "date": lambda s: f"{s.wall.year:04d}-{s.wall.month:02d}-{s.wall.day:02d}",
    "julian": lambda s: str((s.wall.date() - MJD_EPOCH).days),
    "hour": lambda s: f"{s.wall.hour:02d}",
    "minute": lambda s: f"{s.wall.minute:02d}",
    "second": lambda s: f"{s.wall.second:02d}",
    "time": lambda s: f"{s.wall:%H:%M:%S}",
    "iso8601": _iso8601,
    "std11": _std11,
    "zone": lambda s: _zone_text(s.offset),
    "weekday": lambda s: str((s.wall.weekday() + 1) % 7),
}


def _validate(call: Call, compiler: Any) -> Call:
    zone = call.tag(":zone")
    if isinstance(zone, str) and parse_zone(zone) is None:
        compiler.warn(f"line {call.line}: :zone \"{zone}\" is not a valid time zone "
                      "(+hhmm or -hhmm); the local time zone is used (RFC 5260 §4.1)")
    part = call.args[-2]
    if isinstance(part, str) and part.lower() not in DATE_PARTS:
        compiler.warn(f"line {call.line}: unknown date part \"{part}\"; the test is false "
                      "(RFC 5260 §4.2)")
    if call.name == "date":
        header = call.args[0]
        if isinstance(header, str):
            from mda.sieve.core import valid_field_name

            if not valid_field_name(header):
                compiler.error("bad-value", f"date: \"{header}\" is not a valid header "
                               "field name (RFC 5260 §4.1, RFC 5322 §3.6.8)")
    return validate_match(call, compiler)


def _convert(ctx: Any, call: Call, stamp: Stamp) -> Stamp | None:
    """Apply :zone / :originalzone / the local zone (RFC 5260 §4.1)."""
    if call.tag(":originalzone"):
        return stamp
    target: int | None = None
    if ":zone" in call.tags:
        text = ctx.string(call.tag(":zone"))
        target = parse_zone(text)
        if target is None:
            ctx.warn(f"invalid :zone \"{text}\"; using the local time zone", call)
    if target is None:
        target = local_offset(ctx, stamp.utc)
    try:
        return stamp.shifted(target)
    except OverflowError:
        return None


def _part_values(ctx: Any, call: Call, stamps: list[Stamp]) -> list[str] | None:
    part = ctx.string(call.args[-2]).lower()
    render = DATE_PARTS.get(part)
    if render is None:
        ctx.warn(f"unknown date part \"{part}\"; the test is false", call)
        return None
    values = []
    for stamp in stamps:
        converted = _convert(ctx, call, stamp)
        if converted is not None:
            values.append(render(converted))
    return values


def header_dates(ctx: Any, call: Call, name: str) -> list[Stamp]:
    """The date of the selected occurrence of a header field (first one without :index)."""
    raw = ctx.message.raw_header_values(name)
    chosen = indexed(call, raw) if ":index" in call.tags else raw[:1]
    stamps = []
    for value in chosen:
        if name.lower() == "received":
            value = value.rpartition(";")[2]
        stamp = parse_date(value)
        if stamp is not None:
            stamps.append(stamp)
    return stamps


def _run_date(ctx: Any, call: Call) -> bool:
    values = _part_values(ctx, call, header_dates(ctx, call, ctx.string(call.args[0])))
    if values is None:
        return False
    return match(ctx, call, values, ctx.strings(call.args[-1]))


def _run_currentdate(ctx: Any, call: Call) -> bool:
    now = ctx.environment.now
    if now is None:
        ctx.warn("currentdate: the current time is not known; the test is false", call)
        return False
    if now.tzinfo is not None:
        offset = now.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        stamp = Stamp(now.replace(tzinfo=None), minutes)
    else:
        stamp = Stamp(now, 0)
    values = _part_values(ctx, call, [stamp])
    if values is None:
        return False
    return match(ctx, call, values, ctx.strings(call.args[-1]))


GROUPS = ("comparator", "match-type")

EXTENSION = Extension(
    name="date",
    commands=(
        CommandSpec("date", "test", ("string", "string", "stringlist"), groups=GROUPS,
                    extension="date", validate=_validate, run=_run_date),
        CommandSpec("currentdate", "test", ("string", "stringlist"), groups=GROUPS,
                    extension="date", validate=_validate, run=_run_currentdate),
    ),
    tags=(
        TagSpec(":zone", arg="string", group="zone", commands=("date", "currentdate"),
                extension="date"),
        TagSpec(":originalzone", group="zone", commands=("date",), extension="date"),
    ),
)
