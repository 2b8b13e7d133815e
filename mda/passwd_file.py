"""Reading a Dovecot passwd-file, to carry its users over to mda (`mda user import-passwd`).

Sans-IO: bytes in, a validated list of entries out; the CLI applies them in one transaction.

A line is `user:password:uid:gid:gecos:home:shell:extra_fields`. Every field after the
password may be empty or missing; uid, gid, gecos, home and shell mean nothing to mda and
are not read. Blank lines and lines starting with `#` are skipped. The extra fields are
space-separated `key=value` (or bare `key`) items; of them mda reads the user's quota:

- `quota_rule=*:storage=1G` or `userdb_quota_rule=...` (Dovecot's quota rule for the
  default mailbox mask `*` or `?`), with any of `storage=N` (KiB unless a unit follows),
  `bytes=N`, `messages=N` joined by `:`; units `B`, `K`, `M`, `G`, `T` (powers of 1024, any
  case); 0 means unlimited, as in Dovecot. `*:ignore` means no quota at all.

Other extra fields (`userdb_mail`, `nopassword`, `quota_rule2`, rules for one mailbox such
as `Trash:storage=+100M` ...) are ignored and listed in `PasswdFile.ignored_fields` so the
operator can be told once. `nopassword` in particular is not honoured: a user without a
password cannot log in to mda.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mda.passwords import PasswordSchemeError, check_scheme
from mda.store import UNCHANGED, InvalidAddress, normalize_address

__all__ = ["PasswdEntry", "PasswdFile", "PasswdFileError", "parse_passwd_file",
           "parse_quota_rule"]

#: The largest quota limit the store holds (a signed 64-bit column).
MAX_LIMIT = 2**63 - 1
_QUOTA_FIELDS = ("quota_rule", "userdb_quota_rule")
_DEFAULT_MASKS = ("*", "?")
_LIMIT_VALUE = re.compile(r"([0-9]+)(?:([kmgt])(?:i?b)?|(b))?", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


class PasswdFileError(ValueError):
    """A line of the passwd-file cannot be imported; nothing should be imported.

    Attributes:
        line: the 1-based line number.
        reason: what is wrong with it.
    """

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"line {line}: {reason}")


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """One user line.

    Attributes:
        line: the 1-based line number.
        address: the user's canonical address.
        password: the stored password as written (`{SCHEME}...` or a crypt(3) hash), or
            None when the field is empty.
        scheme: what `mda.passwords.check_scheme` says of it (`PLAIN` for `{CLEAR}` too), or
            None without a password.
        storage_limit: bytes allowed (None = unlimited), or `UNCHANGED` without a quota rule.
        messages_limit: messages allowed (None = unlimited), or `UNCHANGED`.
    """

    line: int
    address: str
    password: str | None
    scheme: str | None
    storage_limit: Any = UNCHANGED
    messages_limit: Any = UNCHANGED


@dataclass(frozen=True, slots=True)
class PasswdFile:
    """A parsed passwd-file.

    Attributes:
        entries: the user lines in file order (addresses unique).
        ignored_fields: the extra fields mda does not use, each listed once, in order of
            first appearance (rules for single mailboxes as `key (mailbox NAME)`).
    """

    entries: list[PasswdEntry] = field(default_factory=list)
    ignored_fields: list[str] = field(default_factory=list)


def parse_passwd_file(data: bytes, *, domain: str | None = None) -> PasswdFile:
    """Parse and validate a whole passwd-file.

    Args:
        data: the file's bytes (UTF-8; `\\n` or `\\r\\n` line ends).
        domain: appended as `@domain` to user names without one (a per-domain passwd-file
            whose users are bare local parts); None leaves them, so they are refused.

    Returns:
        The entries and the ignored extra fields.

    Raises:
        PasswdFileError: the first line that is not valid UTF-8, has no password field, a
            bad address, an unknown password scheme or malformed hash, a quota rule mda
            cannot apply, or an address already given on an earlier line.
    """
    parsed = PasswdFile()
    seen: dict[str, int] = {}
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark some editors write
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PasswdFileError(number, f"not valid UTF-8 (byte {exc.start + 1})") from None
        if not line.strip() or line.startswith("#"):
            continue
        entry = _parse_line(number, line, domain, parsed.ignored_fields)
        if entry.address in seen:
            raise PasswdFileError(number, f"{entry.address} is already on line "
                                          f"{seen[entry.address]}")
        seen[entry.address] = number
        parsed.entries.append(entry)
    return parsed


def _parse_line(number: int, line: str, domain: str | None,
                ignored: list[str]) -> PasswdEntry:
    fields = line.split(":", 7)
    user = fields[0].strip()
    if not user:
        raise PasswdFileError(number, "empty user name")
    if len(fields) < 2:
        raise PasswdFileError(number, "no password field (expected user:password:...)")
    if domain is not None and "@" not in user:
        user = f"{user}@{domain}"
    try:
        address = normalize_address(user)
    except InvalidAddress as exc:
        hint = " (bare user names need a domain: --domain)" if "@" not in user else ""
        raise PasswdFileError(number, f"bad address: {exc}{hint}") from None
    password = fields[1] or None
    scheme = None
    if password is not None:
        try:
            scheme = check_scheme(password)
        except PasswordSchemeError as exc:
            raise PasswdFileError(number, f"{address}: {exc}") from None
    limits: dict[str, Any] = {}
    extra = fields[7] if len(fields) == 8 else ""
    for item in extra.split():
        key, _, value = item.partition("=")
        if key in _QUOTA_FIELDS:
            mask = value.split(":", 1)[0]
            if mask not in _DEFAULT_MASKS:
                _note(ignored, f"{key} (mailbox {mask})")
                continue
            try:
                limits.update(parse_quota_rule(value))
            except ValueError as exc:
                raise PasswdFileError(number, f"{address}: {key}={value}: {exc}") from None
        else:
            _note(ignored, key)
    return PasswdEntry(number, address, password, scheme, **limits)


def _note(ignored: list[str], name: str) -> None:
    if name not in ignored:
        ignored.append(name)


def parse_quota_rule(rule: str) -> dict[str, int | None]:
    """Read a Dovecot quota rule for the whole user (`*:storage=1G:messages=1000`).

    Args:
        rule: `MASK:LIMIT[:LIMIT]...` where MASK is `*` or `?` and each LIMIT is
            `storage=N` (KiB without a unit), `bytes=N` or `messages=N`, N a whole number
            with an optional unit B, K, M, G, T (any case, powers of 1024); or `MASK:ignore`.

    Returns:
        The limits given: `storage_limit` (bytes) and/or `messages_limit`, each None for
        unlimited (Dovecot's 0, and `ignore`).

    Raises:
        ValueError: not such a rule: another mask, a relative (`+N`, `-N`) or percentage
            limit (which need a default quota a passwd-file line does not have), an
            unknown limit name or unit, a `backend=` rule, or a limit above 2**63-1.
    """
    mask, sep, limits = rule.partition(":")
    if not sep or mask not in _DEFAULT_MASKS:
        raise ValueError("expected *:storage=N, *:bytes=N or *:messages=N")
    if limits == "ignore":
        return {"storage_limit": None, "messages_limit": None}
    result: dict[str, int | None] = {}
    for item in limits.split(":"):
        name, _, value = item.partition("=")
        if name == "backend":
            raise ValueError("backend quota rules are not supported")
        if name not in ("storage", "bytes", "messages"):
            raise ValueError(f"unknown quota limit {name!r} (use storage, bytes or messages)")
        if value[:1] in ("+", "-") or value.endswith("%"):
            raise ValueError(f"relative limit {item!r}: give an absolute value")
        match = _LIMIT_VALUE.fullmatch(value)
        if match is None:
            raise ValueError(f"bad limit {item!r} (a whole number with an optional unit "
                             f"B, K, M, G or T)")
        unit = (match[2] or match[3] or ("k" if name == "storage" else "b")).lower()
        amount = int(match[1]) * _UNITS[unit]
        if amount > MAX_LIMIT:
            raise ValueError(f"limit {item!r} is larger than {MAX_LIMIT}")
        key = "messages_limit" if name == "messages" else "storage_limit"
        result[key] = amount or None
    return result
