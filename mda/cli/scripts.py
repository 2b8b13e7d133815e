"""Managing users' stored Sieve scripts: `mda sieve put|activate|deactivate|list|get|delete|
errors`.

`put` refuses a script that does not compile (the same compiler delivery and ManageSieve
use), printing the line and column of the error, and one that would pass the user's script
quotas (`MDA_SIEVE_MAX_SCRIPTS`, `MDA_SIEVE_MAX_SCRIPT_SIZE`, `MDA_SIEVE_MAX_STORAGE`), as
ManageSieve does. A user has at most one active script
(RFC 5804 §1.4); the active one cannot be deleted until deactivated. `errors` shows the
compile and runtime errors met while delivering to the user: the script was skipped or its
actions dropped, and the message was kept in INBOX.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mda.cli import CLIError, load_settings, sieve
from mda.cli.admin import emit_bytes, emit_json, for_user, with_store
from mda.sieve import SieveCompileError, compile_script
from mda.sieve_config import sieve_limits
from mda.store import (
    Store,
    activate_script,
    deactivate_scripts,
    delete_script,
    get_script,
    get_user,
    list_scripts,
    list_sieve_errors,
    put_script,
)
from mda.store.scripts import ScriptQuota


def read_script(path: str) -> str:
    """Read a Sieve script file (`-` = stdin) and check that it compiles.

    Args:
        path: the file name, or `-`.

    Returns:
        The script source.

    Raises:
        CLIError: unreadable, not UTF-8 (RFC 5228 §2.2), or does not compile within the
            configured limits (`mda.sieve_config`; the message gives line and column).
    """
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path}: not UTF-8 at byte {exc.start} (RFC 5228 §2.2: scripts are "
                       f"UTF-8)") from exc
    try:
        compile_script(source, limits=sieve_limits(load_settings()))
    except SieveCompileError as exc:
        raise CLIError(f"{path}: {exc}") from exc
    return source


@sieve.command("put")
@click.argument("address")
@click.argument("name")
@click.argument("file", metavar="FILE")
@click.option("--activate", is_flag=True, help="Also make it the active script.")
@with_store
async def sieve_put(store: Store, address: str, name: str, file: str, activate: bool) -> None:
    """Store FILE (or - for stdin) as script NAME of ADDRESS, if it compiles and fits the
    script quotas."""
    source = read_script(file)
    quota = ScriptQuota.from_settings(load_settings())
    async with store.transaction() as session:
        owner = await get_user(session, address)
        script = await put_script(session, owner.id, name, source, quota=quota)
        if activate:
            await activate_script(session, owner.id, script.name)
    click.echo(f"stored {script.name!r} for {owner.address}"
               + (" (active)" if activate or script.active else ""))


@sieve.command("activate")
@click.argument("address")
@click.argument("name")
@with_store
async def sieve_activate(store: Store, address: str, name: str) -> None:
    """Make NAME the active script of ADDRESS (deactivating any other)."""
    owner, script = await for_user(store, address, write=True,
                                   fetch=lambda s, u: activate_script(s, u.id, name))
    click.echo(f"{script.name!r} is now active for {owner.address}")


@sieve.command("deactivate")
@click.argument("address")
@with_store
async def sieve_deactivate(store: Store, address: str) -> None:
    """Deactivate the active script of ADDRESS (mail is then kept in INBOX)."""
    owner, had_one = await for_user(store, address, write=True,
                                    fetch=lambda s, u: deactivate_scripts(s, u.id))
    click.echo(f"no active script for {owner.address}"
               + ("" if had_one else " (none was active)"))


@sieve.command("list")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_store
async def sieve_list(store: Store, address: str, as_json: bool) -> None:
    """List the scripts of ADDRESS; the active one is marked."""
    _, scripts = await for_user(store, address, lambda s, u: list_scripts(s, u.id))
    if as_json:
        emit_json([{"name": s.name, "active": s.active,
                    "size": len(s.source.encode("utf-8"))} for s in scripts])
        return
    for s in scripts:
        click.echo(f"{s.name}{'  (active)' if s.active else ''}")


@sieve.command("get")
@click.argument("address")
@click.argument("name")
@with_store
async def sieve_get(store: Store, address: str, name: str) -> None:
    """Print the source of script NAME of ADDRESS, exactly as stored."""
    _, script = await for_user(store, address, lambda s, u: get_script(s, u.id, name))
    emit_bytes(script.source.encode("utf-8"))


@sieve.command("delete")
@click.argument("address")
@click.argument("name")
@with_store
async def sieve_delete(store: Store, address: str, name: str) -> None:
    """Delete script NAME of ADDRESS (not the active one, RFC 5804 §2.10)."""
    owner, _ = await for_user(store, address, write=True,
                              fetch=lambda s, u: delete_script(s, u.id, name))
    click.echo(f"deleted {name!r} of {owner.address}")


@sieve.command("errors")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_store
async def sieve_errors(store: Store, address: str, as_json: bool) -> None:
    """Show the Sieve errors met while delivering to ADDRESS, oldest first."""
    _, errors = await for_user(store, address, lambda s, u: list_sieve_errors(s, u.id))
    if as_json:
        emit_json([{"time": e.occurred_at.isoformat(), "kind": e.kind,
                    "script": e.script_name, "queue_id": e.queue_id, "message": e.message}
                   for e in errors])
        return
    for e in errors:
        where = f" {e.script_name!r}" if e.script_name else ""
        queue = f" [{e.queue_id}]" if e.queue_id else ""
        click.echo(f"{e.occurred_at.isoformat(timespec='seconds')} {e.kind}{where}{queue}: "
                   f"{e.message}")
