"""Users' Sieve scripts (at most one active, RFC 5804 §1.4) and the per-user Sieve error log.

The store keeps script sources as given; whether a script compiles is the caller's check
(the CLI and ManageSieve run `mda.sieve.compile_script` before `put_script`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mda.store.errors import AlreadyExists, ScriptActive, ScriptNotFound
from mda.store.models import SieveError, SieveScript, utcnow
from mda.store.names import normalize_script_name

ERROR_LOG_SIZE = 100  # errors kept per user; older ones are dropped


async def put_script(session: AsyncSession, user_id: int, name: str,
                     source: str) -> SieveScript:
    """Create a script or replace the source of an existing one (keeping its active state).

    Args:
        session: a write session.
        user_id: the owner.
        name: the script name (RFC 5804 §1.6).
        source: the Sieve source text.

    Returns:
        The stored script.

    Raises:
        InvalidScriptName: the name is malformed.
    """
    canonical = normalize_script_name(name)
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
