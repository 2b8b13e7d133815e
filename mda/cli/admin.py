"""Operator commands on the store: `mda db`, `mda user`, `mda quota`, `mda mailbox`,
`mda message`.

Passwords (for ManageSieve logins) are read from standard input (`--password-stdin`: one
line, the line ending removed) or prompted for twice on a terminal; they are never taken
as command-line arguments, which other users can see in the process list.

Every command opens the database named by `MDA_DATABASE_URL`, does its work in one
transaction and exits 0; any failure (bad address, unknown user, database down, ...) is one
line `mda: error: <reason>` on stderr and a non-zero exit status.

JSON output (`--json`) is the machine interface the tests and scripts rely on:
- `user list --json`: `[{"address", "password_set", "storage_used", "storage_limit",
  "messages_used", "messages_limit"}]`
- `user show ADDRESS --json`: `{"address", "password_set": bool, "password_scheme":
  "ARGON2ID"|...|null, "storage_used", "storage_limit", "messages_used", "messages_limit"}`
  (the hash itself is never printed)
- `quota show ADDRESS --json`: `{"storage_used": bytes, "storage_limit": bytes|null,
  "messages_used": n, "messages_limit": n|null}`
- `mailbox list ADDRESS --json`: `[{"name", "messages", "bytes", "special_use"}]`
  (`special_use` is the RFC 6154 attribute such as `\\Junk`, or null)
- `message list ADDRESS --json`: `[{"mailbox", "uid", "size", "flags", "subject", "from"}]`
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from mda.cli import CLIError, db, load_settings, mailbox, message, quota, user
from mda.config import parse_size
from mda.passwd_file import PasswdEntry, PasswdFileError, parse_passwd_file
from mda.passwords import PasswordSchemeError, check_scheme, hash_password, verify_password
from mda.store import (
    UNCHANGED,
    QuotaUsage,
    Session,
    Store,
    StoreError,
    User,
    add_user,
    delete_message,
    delete_user,
    find_user,
    get_user,
    list_mailboxes,
    list_messages,
    list_users,
    message_bytes,
    quota_usage,
    set_password_hash,
    set_quota,
)
from mda.store.engine import safe_url, sqlite_path

T = TypeVar("T")


def with_store(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Decorator for a command body `async def body(store, **params)`: runs it with a Store
    on the configured database, closes the store, and turns store errors into one CLI line.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        settings = load_settings()
        check_relative_database(settings.database_url)

        async def run() -> T:
            store = Store(settings.database_url)
            try:
                return await fn(store, *args, **kwargs)
            finally:
                await store.dispose()

        try:
            return asyncio.run(run())
        except StoreError as exc:
            raise CLIError(str(exc)) from exc

    return wrapper


def check_relative_database(url: str) -> None:
    """Explain a missing SQLite file named by a relative path (such as the default
    `var/mda.sqlite3`), which is looked for under the current directory.

    Args:
        url: the database URL (`MDA_DATABASE_URL`).

    Raises:
        CLIError: the URL names a relative SQLite path and no file is there; the message
            gives the absolute path looked for and suggests an absolute URL.
    """
    path = sqlite_path(url)
    if path is None or path.is_absolute() or path.exists():
        return
    where = path.resolve()
    raise CLIError(f"database file {where} does not exist (run `mda db upgrade`); the "
                   f"relative path {path} (from MDA_DATABASE_URL or its default) is resolved "
                   f"against the current directory, so set an absolute one, e.g. "
                   f"MDA_DATABASE_URL=sqlite+aiosqlite:///{where}")


def parse_count(text: str) -> int:
    """Parse a message count: a whole number >= 0.

    Raises:
        ValueError: anything else.
    """
    if not text.strip().isdigit():
        raise ValueError(f"not a message count: {text!r} (use a whole number >= 0)")
    return int(text)


#: The largest quota limit the store can hold (a signed 64-bit column), bytes or messages.
MAX_LIMIT = 2**63 - 1


class LimitType(click.ParamType):
    """A quota limit parsed by `parse` (`parse_size` or `parse_count`), at most `MAX_LIMIT`;
    with `allow_none`, `none` means unlimited (None)."""

    def __init__(self, name: str, parse: Callable[[str], int], allow_none: bool = False) -> None:
        self.name = name
        self.parse = parse
        self.allow_none = allow_none

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        if not isinstance(value, str):  # a default (None, UNCHANGED) or already converted
            return value
        if self.allow_none and value.strip().lower() == "none":
            return None
        try:
            limit = self.parse(value)
        except ValueError as exc:
            self.fail(f"{exc}{' or none' if self.allow_none else ''}", param, ctx)
        if limit > MAX_LIMIT:
            self.fail(f"{value!r} is too large: the largest limit is {MAX_LIMIT} "
                      f"(2**63-1){'; use none for unlimited' if self.allow_none else ''}",
                      param, ctx)
        return limit


SIZE = LimitType("SIZE", parse_size)
COUNT = LimitType("N", parse_count)
SIZE_OR_NONE = LimitType("SIZE|none", parse_size, allow_none=True)
COUNT_OR_NONE = LimitType("N|none", parse_count, allow_none=True)


async def for_user(store: Store, address: str,
                   fetch: Callable[[Session, User], Awaitable[T]], *,
                   write: bool = False) -> tuple[User, T]:
    """Run `fetch(session, user)` for the user ADDRESS in one transaction.

    Args:
        store: the store.
        address: the user's address.
        fetch: what to do with the session and the user.
        write: a write transaction (committed) instead of a read.

    Returns:
        The user and what `fetch` returned.

    Raises:
        InvalidAddress, UserNotFound, StoreUnavailable, and whatever `fetch` raises.
    """
    async with (store.transaction() if write else store.read()) as session:
        owner = await get_user(session, address)
        return owner, await fetch(session, owner)


def emit_bytes(data: bytes) -> None:
    """Write bytes to stdout exactly as they are (no newline, no re-encoding)."""
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def emit_json(value: Any) -> None:
    """Print a value as JSON on one line (UTF-8, not ASCII-escaped)."""
    click.echo(json.dumps(value, ensure_ascii=False))


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _echo_usage(usage: QuotaUsage) -> None:
    click.echo(f"storage  {usage.storage_used} / {_limit(usage.storage_limit)} bytes")
    click.echo(f"messages {usage.messages_used} / {_limit(usage.messages_limit)}")


def _usage_dict(usage: QuotaUsage) -> dict[str, int | None]:
    return {"storage_used": usage.storage_used, "storage_limit": usage.storage_limit,
            "messages_used": usage.messages_used, "messages_limit": usage.messages_limit}


# ---------------------------------------------------------------- mda db


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest revision."""
    from mda.store.migrate import head_revision, upgrade  # alembic is slow to import

    settings = load_settings()
    try:
        upgrade(settings.database_url)
    except StoreError as exc:
        raise CLIError(str(exc)) from exc
    path = sqlite_path(settings.database_url)
    shown = path.resolve() if path is not None else safe_url(settings.database_url)
    click.echo(f"database {shown} is at revision {head_revision()}")


# ---------------------------------------------------------------- mda user


def read_password_stdin() -> str:
    """One password line from standard input, only the line ending (LF or CRLF) removed.

    Raises:
        CLIError: the line is empty or not valid UTF-8.
    """
    line = sys.stdin.buffer.readline().removesuffix(b"\n").removesuffix(b"\r")
    try:
        password = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError("the password on standard input is not valid UTF-8") from None
    if not password:
        raise CLIError("empty password on standard input")
    return password


def prompt_password() -> str:
    """A new password typed twice on the terminal (not echoed).

    Raises:
        CLIError: standard input is not a terminal.
    """
    if not sys.stdin.isatty():
        raise CLIError("standard input is not a terminal: give --password-stdin to read the "
                       "password from it")
    return click.prompt("New password", hide_input=True,
                        confirmation_prompt="Retype new password")


def _hash(password: str) -> str:
    try:
        return hash_password(password)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


@user.command("add")
@click.argument("address")
@click.option("--quota-storage", type=SIZE, default=None,
              help="Storage limit: bytes, or a number with K, M or G. Default unlimited.")
@click.option("--quota-messages", type=COUNT, default=None,
              help="Message-count limit. Default unlimited.")
@click.option("--password-stdin", is_flag=True,
              help="Read the ManageSieve password from the first line of standard input. "
                   "Without it the user has no password and cannot log in.")
@with_store
async def user_add(store: Store, address: str, quota_storage: int | None,
                   quota_messages: int | None, password_stdin: bool) -> None:
    """Add user ADDRESS (domain lower-cased) with an INBOX."""
    password_hash = _hash(read_password_stdin()) if password_stdin else None
    async with store.transaction() as session:
        new = await add_user(session, address, storage_limit=quota_storage,
                             messages_limit=quota_messages)
        if password_hash is not None:
            await set_password_hash(session, new.address, password_hash)
    click.echo(f"added {new.address}")


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input instead of "
                   "prompting twice on the terminal.")
@click.option("--clear", is_flag=True,
              help="Remove the password: the user can no longer log in to ManageSieve.")
@with_store
async def user_passwd(store: Store, address: str, password_stdin: bool, clear: bool) -> None:
    """Set (argon2id) or remove the ManageSieve password of ADDRESS."""
    if clear and password_stdin:
        raise CLIError("--clear and --password-stdin exclude each other")
    async with store.read() as session:  # an unknown user fails before any prompt
        await get_user(session, address)
    password_hash = None
    if not clear:
        password_hash = _hash(read_password_stdin() if password_stdin else prompt_password())
    async with store.transaction() as session:
        changed = await set_password_hash(session, address, password_hash)
    if clear:
        click.echo(f"{changed.address}: password removed (ManageSieve login disabled)")
    else:
        click.echo(f"{changed.address}: password set")


def _password_scheme(u: User) -> str | None:
    if u.password_hash is None:
        return None
    try:
        return check_scheme(u.password_hash)
    except PasswordSchemeError:
        return "invalid"


@user.command("show")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_store
async def user_show(store: Store, address: str, as_json: bool) -> None:
    """Show ADDRESS: whether a password is set (and its scheme), quota usage and limits."""
    async with store.read() as session:
        u = await get_user(session, address)
    scheme = _password_scheme(u)
    if as_json:
        emit_json({"address": u.address, "password_set": scheme is not None,
                   "password_scheme": scheme, **_usage_dict(QuotaUsage.of(u))})
        return
    click.echo(f"address  {u.address}")
    click.echo(f"password {f'set ({scheme})' if scheme else 'none (cannot log in)'}")
    _echo_usage(QuotaUsage.of(u))


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_store
async def user_list(store: Store, as_json: bool) -> None:
    """List users with whether they have a password and their quota usage."""
    async with store.read() as session:
        users = await list_users(session)
    if as_json:
        emit_json([{"address": u.address, "password_set": u.password_hash is not None,
                    **_usage_dict(QuotaUsage.of(u))} for u in users])
        return
    for u in users:
        password = "password" if u.password_hash is not None else "no password"
        click.echo(f"{u.address}  {password}  storage {u.storage_used}/"
                   f"{_limit(u.storage_limit)} bytes  messages {u.messages_used}/"
                   f"{_limit(u.messages_limit)}")


@user.command("delete")
@click.argument("address")
@with_store
async def user_delete(store: Store, address: str) -> None:
    """Delete user ADDRESS with all mailboxes, messages and Sieve scripts."""
    async with store.transaction() as session:
        gone = await get_user(session, address)
        await delete_user(session, address)
    click.echo(f"deleted {gone.address}")


@user.command("set-quota")
@click.argument("address")
@click.option("--storage", type=SIZE_OR_NONE, default=UNCHANGED,
              help="Storage limit (bytes, K, M, G) or 'none' for unlimited.")
@click.option("--messages", type=COUNT_OR_NONE, default=UNCHANGED,
              help="Message-count limit or 'none' for unlimited.")
@with_store
async def user_set_quota(store: Store, address: str, storage: Any, messages: Any) -> None:
    """Change the quota limits of ADDRESS; usage is kept."""
    if storage is UNCHANGED and messages is UNCHANGED:
        raise CLIError("nothing to change: give --storage and/or --messages")
    async with store.transaction() as session:
        changed = await set_quota(session, address, storage_limit=storage,
                                  messages_limit=messages)
    click.echo(f"{changed.address}: storage limit {_limit(changed.storage_limit)}, "
               f"message limit {_limit(changed.messages_limit)}")


class _DryRun(Exception):
    """Raised at the end of `import-passwd --dry-run` to roll the transaction back."""


#: The hash `import-passwd --dry-run` pretends to have made for a PLAIN password.
_NOT_HASHED = "{ARGON2ID}(not computed in a dry run)"


def _plain_to_hash(entry: PasswdEntry, old: str | None, dry_run: bool) -> str:
    """The argon2id hash to store for a PLAIN entry: the old hash when it verifies the same
    password (nothing to change), else a new one."""
    assert entry.password is not None
    plain = entry.password.partition("}")[2]
    if old is not None:
        try:
            if verify_password(old, plain):
                return old
        except PasswordSchemeError:
            pass
    return _NOT_HASHED if dry_run else hash_password(plain)


@user.command("import-passwd")
@click.argument("file", type=click.File("rb"))
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--domain", default=None, metavar="DOMAIN",
              help="Append @DOMAIN to user names without a domain (a per-domain file).")
@with_store
async def user_import_passwd(store: Store, file: Any, dry_run: bool,
                             domain: str | None) -> None:
    """Import users and passwords from a Dovecot passwd-file (`-` reads standard input).

    Lines are `user:{SCHEME}hash:uid:gid:gecos:home:shell:extra_fields`. Missing users are
    added, existing ones get the file's password and quota. All lines or none: a bad line
    (address, password scheme, quota rule) stops the import with its line number.
    {PLAIN}/{CLEAR} passwords are stored as argon2id hashes, never as plain text.
    """
    try:
        parsed = parse_passwd_file(file.read(), domain=domain)
    except PasswdFileError as exc:
        raise CLIError(f"{file.name}: {exc}") from None
    async with store.read() as session:
        old_hashes = {u.address: u.password_hash for u in await list_users(session)}
    plain = [e for e in parsed.entries if e.scheme == "PLAIN"]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # argon2 frees the GIL
        hashes = dict(zip((e.address for e in plain), pool.map(
            lambda e: _plain_to_hash(e, old_hashes.get(e.address), dry_run), plain)))
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    report: list[str] = []  # printed only once the transaction is over
    without_password: list[str] = []
    try:
        async with store.transaction() as session:
            for entry in parsed.entries:
                password_hash = hashes.get(entry.address, entry.password)
                outcome, changes, stored_hash = await _import_entry(session, entry,
                                                                    password_hash)
                counts[outcome] += 1
                report.append(f"{outcome} {entry.address}"
                              + (f" ({', '.join(changes)})" if changes else ""))
                if stored_hash is None:
                    without_password.append(entry.address)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    for line in report:
        click.echo(line)
    click.echo(", ".join(f"{name} {n}" for name, n in counts.items()))
    converted = sum(1 for e in plain if hashes[e.address] != old_hashes.get(e.address))
    if converted:
        click.echo(f"note: {'would store' if dry_run else 'stored'} {converted} PLAIN "
                   f"password{'s' if converted > 1 else ''} as ARGON2ID, not as plain text")
    if without_password:
        click.echo(f"note: no password, so no ManageSieve login: {', '.join(without_password)}")
    if parsed.ignored_fields:
        click.echo(f"note: extra fields ignored: {', '.join(parsed.ignored_fields)}")
    if dry_run:
        click.echo("dry run: nothing was written")


async def _import_entry(session: Session, entry: PasswdEntry,
                        password_hash: str | None) -> tuple[str, list[str], str | None]:
    """Apply one passwd-file entry.

    Returns:
        (`added`, `updated` or `unchanged`; what was updated (`password`, `quota`); the
        password hash the user ends up with, None for none).
    """
    existing = await find_user(session, entry.address)
    if existing is None:
        await add_user(session, entry.address,
                       storage_limit=None if entry.storage_limit is UNCHANGED
                       else entry.storage_limit,
                       messages_limit=None if entry.messages_limit is UNCHANGED
                       else entry.messages_limit)
        if password_hash is not None:
            await set_password_hash(session, entry.address, password_hash)
        return "added", [], password_hash
    changed = []
    if password_hash is not None and password_hash != existing.password_hash:
        await set_password_hash(session, entry.address, password_hash)
        changed.append("password")
    limits = {name: value for name, value in (("storage_limit", entry.storage_limit),
                                              ("messages_limit", entry.messages_limit))
              if value is not UNCHANGED and value != getattr(existing, name)}
    if limits:
        await set_quota(session, entry.address, **limits)
        changed.append("quota")
    final_hash = password_hash if password_hash is not None else existing.password_hash
    return ("updated" if changed else "unchanged"), changed, final_hash


# ---------------------------------------------------------------- mda quota


@quota.command("show")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_store
async def quota_show(store: Store, address: str, as_json: bool) -> None:
    """Show the quota usage and limits of ADDRESS."""
    async with store.read() as session:
        usage = await quota_usage(session, address)
    if as_json:
        emit_json(_usage_dict(usage))
        return
    _echo_usage(usage)


# ---------------------------------------------------------------- mda mailbox


@mailbox.command("list")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_store
async def mailbox_list(store: Store, address: str, as_json: bool) -> None:
    """List the mailboxes of ADDRESS with message count, size and special-use attribute."""
    _, boxes = await for_user(store, address, lambda s, u: list_mailboxes(s, u.id))
    if as_json:
        emit_json([{"name": b.name, "messages": b.messages, "bytes": b.bytes,
                    "special_use": b.special_use} for b in boxes])
        return
    for b in boxes:
        use = f"  {b.special_use}" if b.special_use else ""
        click.echo(f"{b.name}  {b.messages} messages  {b.bytes} bytes{use}")


# ---------------------------------------------------------------- mda message


@message.command("list")
@click.argument("address")
@click.option("--mailbox", "mailbox_name", default=None, help="Only this mailbox.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_store
async def message_list(store: Store, address: str, mailbox_name: str | None,
                       as_json: bool) -> None:
    """List the stored messages of ADDRESS."""
    _, infos = await for_user(store, address,
                              lambda s, u: list_messages(s, u.id, mailbox_name))
    if as_json:
        emit_json([{"mailbox": m.mailbox, "uid": m.uid, "size": m.size, "flags": list(m.flags),
                    "subject": m.subject, "from": m.sender} for m in infos])
        return
    for m in infos:
        flags = " ".join(m.flags) or "-"
        click.echo(f"{m.mailbox}  {m.uid}  {m.size}  {flags}  {m.sender}  {m.subject}")


def _uid(value: str) -> int:
    if not value.isdigit() or int(value) == 0:
        raise CLIError(f"not a UID: {value!r} (use a whole number >= 1)")
    return int(value)


@message.command("show")
@click.argument("address")
@click.argument("mailbox_name", metavar="MAILBOX")
@click.argument("uid")
@with_store
async def message_show(store: Store, address: str, mailbox_name: str, uid: str) -> None:
    """Write the stored bytes of message UID in MAILBOX to stdout."""
    number = _uid(uid)
    _, data = await for_user(store, address,
                             lambda s, u: message_bytes(s, u.id, mailbox_name, number))
    emit_bytes(data)


@message.command("delete")
@click.argument("address")
@click.argument("mailbox_name", metavar="MAILBOX")
@click.argument("uid")
@with_store
async def message_delete(store: Store, address: str, mailbox_name: str, uid: str) -> None:
    """Delete message UID from MAILBOX, freeing its quota."""
    number = _uid(uid)
    _, freed = await for_user(store, address, write=True,
                              fetch=lambda s, u: delete_message(s, u.id, mailbox_name, number))
    click.echo(f"deleted UID {number} from {mailbox_name}, freed {freed} bytes")
