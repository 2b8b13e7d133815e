"""Sieve scripts (one active at a time) and the per-user Sieve error log."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from mda.store import (
    AlreadyExists,
    InvalidScriptName,
    ScriptActive,
    ScriptNotFound,
    Store,
    activate_script,
    active_script,
    deactivate_scripts,
    delete_script,
    get_script,
    list_scripts,
    list_sieve_errors,
    put_script,
    record_sieve_error,
    rename_script,
)
from mda.store.models import SieveScript
from mda.store.scripts import ERROR_LOG_SIZE
from tests.store.conftest import new_user


async def test_put_replace_activate_switches_the_one_active(store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        await put_script(session, joe.id, "a", "keep;")
        await put_script(session, joe.id, "b", "discard;")
        await activate_script(session, joe.id, "a")
    async with store.transaction() as session:
        await put_script(session, joe.id, "a", "stop;")  # replacing keeps it active
        await activate_script(session, joe.id, "b")
    async with store.read() as session:
        scripts = await list_scripts(session, joe.id)
        active = await active_script(session, joe.id)
    assert [(s.name, s.active, s.source) for s in scripts] == [
        ("a", False, "stop;"), ("b", True, "discard;")]
    assert active is not None and active.name == "b"


async def test_the_database_refuses_two_active_scripts(store: Store) -> None:
    joe = await new_user(store)
    with pytest.raises(IntegrityError):
        async with store.transaction() as session:
            session.add_all([SieveScript(user_id=joe.id, name=n, source="", active=True)
                             for n in ("x", "y")])
            await session.flush()


async def test_active_script_cannot_be_deleted_until_deactivated(store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        await put_script(session, joe.id, "main", "keep;")
        await activate_script(session, joe.id, "main")
    with pytest.raises(ScriptActive):
        async with store.transaction() as session:
            await delete_script(session, joe.id, "main")
    async with store.transaction() as session:
        assert await deactivate_scripts(session, joe.id)
        assert not await deactivate_scripts(session, joe.id)
        await delete_script(session, joe.id, "main")
    async with store.read() as session:
        assert await list_scripts(session, joe.id) == []
        with pytest.raises(ScriptNotFound):
            await get_script(session, joe.id, "main")


async def test_rename_keeps_active_state_and_refuses_a_taken_name(store: Store) -> None:
    joe = await new_user(store)
    async with store.transaction() as session:
        await put_script(session, joe.id, "old", "keep;")
        await put_script(session, joe.id, "other", "keep;")
        await activate_script(session, joe.id, "old")
        with pytest.raises(AlreadyExists):
            await rename_script(session, joe.id, "old", "other")
        await rename_script(session, joe.id, "old", "new")
    async with store.read() as session:
        assert (await active_script(session, joe.id)).name == "new"


async def test_bad_names_are_refused(store: Store) -> None:
    joe = await new_user(store)
    with pytest.raises(InvalidScriptName):
        async with store.transaction() as session:
            await put_script(session, joe.id, "bad\nname", "keep;")


async def test_error_log_keeps_the_newest_entries(store: Store) -> None:
    joe = await new_user(store)
    ann = await new_user(store, "ann@example.com")
    async with store.transaction() as session:
        await record_sieve_error(session, ann.id, kind="compile", message="ann's")
        for n in range(ERROR_LOG_SIZE + 5):
            await record_sieve_error(session, joe.id, kind="runtime", message=f"error {n}",
                                     script_name="main", queue_id=f"q{n}")
    async with store.read() as session:
        errors = await list_sieve_errors(session, joe.id)
        ann_errors = await list_sieve_errors(session, ann.id)
    assert len(errors) == ERROR_LOG_SIZE
    assert errors[0].message == "error 5" and errors[-1].message == f"error {ERROR_LOG_SIZE + 4}"
    assert errors[-1].occurred_at.tzinfo is not None
    assert [e.message for e in ann_errors] == ["ann's"]
