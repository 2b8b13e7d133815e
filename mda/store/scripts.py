"""Users' Sieve scripts (at most one active, RFC 5804 §1.4), their quotas, and the per-user
Sieve error log.

The store keeps script sources as given; whether a script compiles is the caller's check
(the CLI and ManageSieve run `mda.sieve.compile_script` before `put_script`).

Script quotas (RFC 5804 §1.3 QUOTA/MAXSCRIPTS, QUOTA/MAXSIZE, QUOTA/MAXSTORAGE) are checked
by `check_script_quota` and by `put_script(..., quota=...)` inside the caller's write
transaction, after locking the user's row (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite
write transactions are already serialised by BEGIN IMMEDIATE), so two uploads racing can
never pass a limit together. Sizes are UTF-8 octets; replacing a script counts only the
difference between the old and the new source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, cast, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mda.store.errors import (AlreadyExists, ScriptActive, ScriptNotFound,
                              ScriptQuotaExceeded, UserNotFound)
from mda.store.models import SieveError, SieveScript, User, utcnow
from mda.store.names import normalize_script_name

ERROR_LOG_SIZE = 100  # errors kept per user; older ones are dropped


@dataclass(frozen=True, slots=True)
class ScriptQuota:
    """Per-user limits on Sieve scripts; 0 means no limit.

    Attributes:
        max_scripts: scripts one user may have.
        max_size: octets one script may have.
        max_storage: octets all of one user's scripts may have together.
    """

    max_scripts: int = 0
    max_size: int = 0
    max_storage: int = 0

    @classmethod
    def from_settings(cls, settings: Any) -> ScriptQuota:
        """The quota of `mda.config.Settings` (`sieve_max_scripts`, `sieve_max_script_size`,
        `sieve_max_storage`)."""
        return cls(max_scripts=settings.sieve_max_scripts,
                   max_size=settings.sieve_max_script_size,
                   max_storage=settings.sieve_max_storage)


def script_size(source: str) -> int:
    """The size a script counts for in quotas: its UTF-8 octets."""
    return len(source.encode("utf-8"))


def _octets(session: AsyncSession, column: Any) -> Any:
    """SQL for the UTF-8 octet length of a text column."""
    if session.get_bind().dialect.name == "postgresql":
        return func.octet_length(column)
    return func.length(cast(column, LargeBinary))  # SQLite: a BLOB's length is in octets


async def check_script_quota(session: AsyncSession, user_id: int, name: str, size: int,
                             quota: ScriptQuota) -> None:
    """Check that storing `size` octets as script `name` stays within the user's quota.

    Locks the user's row until the transaction ends (PostgreSQL), so a `put_script` later
    in the same transaction stores exactly what was checked.

    Args:
        session: a write session (a read session checks without the guarantee).
        user_id: the owner.
        name: the script name; replacing an existing script counts only the difference.
        size: the new script's size in octets.
        quota: the limits.

    Raises:
        InvalidScriptName: the name is malformed.
        UserNotFound: the user no longer exists.
        ScriptQuotaExceeded: `limit` says which quota ("size", "scripts", "storage").
    """
    canonical = normalize_script_name(name)
    if quota.max_size and size > quota.max_size:
        raise ScriptQuotaExceeded("size", size, quota.max_size)
    locked = (await session.execute(
        select(User.id).where(User.id == user_id).with_for_update())).scalar_one_or_none()
    if locked is None:
        raise UserNotFound(f"no user with id {user_id}")
    rows = (await session.execute(
        select(SieveScript.name, _octets(session, SieveScript.source))
        .where(SieveScript.user_id == user_id))).all()
    old = {row[0]: int(row[1] or 0) for row in rows}
    count = len(old) + (0 if canonical in old else 1)
    if quota.max_scripts and count > quota.max_scripts:
        raise ScriptQuotaExceeded("scripts", count, quota.max_scripts)
    total = sum(old.values()) - old.get(canonical, 0) + size
    if quota.max_storage and total > quota.max_storage:
        raise ScriptQuotaExceeded("storage", total, quota.max_storage)


async def put_script(session: AsyncSession, user_id: int, name: str,
                     source: str, *, quota: ScriptQuota | None = None) -> SieveScript:
    """Create a script or replace the source of an existing one (keeping its active state).

    Args:
        session: a write session.
        user_id: the owner.
        name: the script name (RFC 5804 §1.6).
        source: the Sieve source text.
        quota: when given, the script quotas to check first (`check_script_quota`).

    Returns:
        The stored script.

    Raises:
        InvalidScriptName: the name is malformed.
        UserNotFound: with a quota, the user no longer exists.
        ScriptQuotaExceeded: with a quota, storing would pass it; nothing is stored.
    """
    canonical = normalize_script_name(name)
    if quota is not None:
        await check_script_quota(session, user_id, canonical, script_size(source), quota)
    script = await _find_script(session, user_id, canonical)
    if script is None:
        script = SieveScript(user_id=user_id, name=canonical, source=source, active=False)
        session.add(script)
    else:
        script.source = source
        script.updated_at = utcnow()
    await session.flush()
    return script


async def _find_script(session: AsyncSession, user_id: int, name: str) -> SieveScript | None:
    return (await session.execute(select(SieveScript).where(
        SieveScript.user_id == user_id, SieveScript.name == name))).scalar_one_or_none()


async def get_script(session: AsyncSession, user_id: int, name: str) -> SieveScript:
    """The user's script with this name.

    Raises:
        InvalidScriptName, ScriptNotFound.
    """
    canonical = normalize_script_name(name)
    script = await _find_script(session, user_id, canonical)
    if script is None:
        raise ScriptNotFound(f"no Sieve script {canonical!r}")
    return script


async def list_scripts(session: AsyncSession, user_id: int) -> list[SieveScript]:
    """The user's scripts, by name."""
    return list((await session.execute(select(SieveScript).where(
        SieveScript.user_id == user_id).order_by(SieveScript.name))).scalars())


async def list_script_names(session: AsyncSession, user_id: int) -> list[tuple[str, bool]]:
    """The user's script names and whether each is the active one, by name, without
    loading the sources (RFC 5804 §2.7 LISTSCRIPTS)."""
    return [(row[0], bool(row[1])) for row in (await session.execute(
        select(SieveScript.name, SieveScript.active).where(SieveScript.user_id == user_id)
        .order_by(SieveScript.name))).all()]


async def active_script(session: AsyncSession, user_id: int) -> SieveScript | None:
    """The user's active script, or None."""
    return (await session.execute(select(SieveScript).where(
        SieveScript.user_id == user_id, SieveScript.active.is_(True)))).scalar_one_or_none()


async def activate_script(session: AsyncSession, user_id: int, name: str) -> SieveScript:
    """Make this script the active one, deactivating any other (RFC 5804 §2.8).

    Raises:
        InvalidScriptName, ScriptNotFound.
    """
    script = await get_script(session, user_id, name)
    await deactivate_scripts(session, user_id)
    await session.execute(update(SieveScript).where(SieveScript.id == script.id)
                          .values(active=True).execution_options(synchronize_session=False))
    script.active = True
    return script


async def deactivate_scripts(session: AsyncSession, user_id: int) -> bool:
    """Deactivate the user's active script, if any (RFC 5804 §2.8, SETACTIVE "").

    Returns:
        True when a script was active.
    """
    result = await session.execute(
        update(SieveScript).where(SieveScript.user_id == user_id, SieveScript.active.is_(True))
        .values(active=False).execution_options(synchronize_session=False))
    return bool(result.rowcount)


async def delete_script(session: AsyncSession, user_id: int, name: str) -> None:
    """Delete a script that is not active (RFC 5804 §2.10).

    Raises:
        InvalidScriptName, ScriptNotFound, ScriptActive.
    """
    script = await get_script(session, user_id, name)
    if script.active:
        raise ScriptActive(f"Sieve script {script.name!r} is active; deactivate it first")
    await session.execute(delete(SieveScript).where(SieveScript.id == script.id))


async def rename_script(session: AsyncSession, user_id: int, old: str, new: str) -> SieveScript:
    """Rename a script, keeping its active state (RFC 5804 §2.11.1).

    Raises:
        InvalidScriptName, ScriptNotFound: `old` is missing or a name is malformed.
        AlreadyExists: a script named `new` exists.
    """
    script = await get_script(session, user_id, old)
    canonical = normalize_script_name(new)
    if await _find_script(session, user_id, canonical) is not None:
        raise AlreadyExists(f"Sieve script {canonical!r} already exists")
    script.name = canonical
    script.updated_at = utcnow()
    await session.flush()
    return script


async def record_sieve_error(session: AsyncSession, user_id: int, *, kind: str, message: str,
                             script_name: str | None = None, queue_id: str | None = None,
                             occurred_at: datetime | None = None) -> None:
    """Log a Sieve error for the user, keeping the newest `ERROR_LOG_SIZE` entries.

    Args:
        session: a write session (delivery uses the recipient's transaction).
        user_id: the user whose script failed.
        kind: "compile" or "runtime".
        message: what went wrong, with line and column for compile errors.
        script_name: the script's name ("default.sieve" for the global default).
        queue_id: the LMTP transaction it happened in.
        occurred_at: when (aware UTC); now by default.
    """
    session.add(SieveError(user_id=user_id, kind=kind, message=message,
                           script_name=script_name, queue_id=queue_id,
                           occurred_at=occurred_at or utcnow()))
    await session.flush()
    keep = (select(SieveError.id).where(SieveError.user_id == user_id)
            .order_by(SieveError.id.desc()).limit(ERROR_LOG_SIZE))
    await session.execute(delete(SieveError).where(
        SieveError.user_id == user_id, SieveError.id.not_in(keep.scalar_subquery())))


async def list_sieve_errors(session: AsyncSession, user_id: int) -> list[SieveError]:
    """The user's logged Sieve errors, oldest first."""
    return list((await session.execute(select(SieveError).where(
        SieveError.user_id == user_id).order_by(SieveError.id))).scalars())
