"""The Sieve engine wired into delivery, against a real SQLite store: global before/after/
default scripts, include, duplicate records, special-use mailboxes, settings."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from mda.config import Settings
from mda.delivery import Deliverer
from mda.delivery.deliverer import REJECT_AFTER_KEEP
from mda.delivery.scripts import GlobalScripts
from mda.sieve import Limits
from mda.store import (
    Store,
    activate_script,
    create_mailbox,
    get_user,
    list_mailboxes,
    list_messages,
    put_script,
    set_quota,
)
from tests.delivery.conftest import MESSAGE, RECEIVED_AT, make_user, transaction
from tests.delivery.test_deliver import errors, stored

JOE = "joe@example.com"


@pytest.fixture
def sieve_dir(tmp_path: Path) -> Path:
    """The deliverer's `sieve_scripts` directory (made by `settings_factory`)."""
    return tmp_path / "sieve_scripts"


def put(folder: Path, name: str, source: str) -> Path:
    """Write a global script file, creating its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(source)
    return path


async def add_script(store: Store, address: str, name: str, source: str,
                     active: bool = False) -> None:
    async with store.transaction() as session:
        user = await get_user(session, address)
        await put_script(session, user.id, name, source)
        if active:
            await activate_script(session, user.id, name)


# ---------------------------------------------------------------- GlobalScripts


def test_global_scripts_order_changes_and_broken_files(
        sieve_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    scripts = GlobalScripts(sieve_dir, Limits())
    assert (scripts.before(), scripts.after(), scripts.default()) == ([], [], None)
    put(sieve_dir / "before.d", "20-b.sieve", "keep;")
    put(sieve_dir / "before.d", "10-a.sieve", "discard;")
    put(sieve_dir / "before.d", "README", "not a script")
    broken = put(sieve_dir / "before.d", "15-broken.sieve", "fileinto")
    with caplog.at_level(logging.ERROR, logger="mda.delivery"):
        first = scripts.before()
        again = scripts.before()
    assert [p.commands[0].name for p in first] == ["discard", "keep"]
    assert [p is q for p, q in zip(first, again)] == [True, True]  # compiled once
    [record] = [r for r in caplog.records if "15-broken.sieve" in r.getMessage()]
    assert "does not compile: line 1" in record.getMessage()  # logged once per version
    broken.write_text("stop;")
    os.utime(broken, ns=(1, 1))  # a new version even on a coarse clock
    assert [p.commands[0].name for p in scripts.before()] == ["discard", "stop", "keep"]


def test_global_include_refuses_names_leaving_the_folder(sieve_dir: Path) -> None:
    scripts = GlobalScripts(sieve_dir, Limits())
    put(sieve_dir / "global", "spam.sieve", "keep;")
    put(sieve_dir, "secret.sieve", "discard;")
    assert scripts.include("spam") == b"keep;"
    assert scripts.include("nothing") is None
    for bad in ("../secret", "..", "a/b", "a\\b", ""):
        assert scripts.include(bad) is None, bad


# ---------------------------------------------------------------- multiscript


async def test_before_user_and_after_scripts_run_in_order(
        store: Store, deliverer: Deliverer, sieve_dir: Path) -> None:
    put(sieve_dir / "before.d", "10-flag.sieve",
        'require "imap4flags";\naddflag "$Screened";\n')
    put(sieve_dir / "before.d", "20-audit.sieve",
        'require ["fileinto", "copy", "mailbox"];\nfileinto :copy :create "Audit";\n')
    put(sieve_dir / "after.d", "10-after.sieve",
        'require ["fileinto", "mailbox"];\nfileinto :create "After";\n')
    await make_user(store, script='require "fileinto";\nif header :contains "subject" '
                                  '"report" { fileinto "Sent"; }\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    # the user's fileinto cancels the implicit keep, so after.d does not run
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("Audit", "Sent"))
    async with store.read() as session:
        user = await get_user(session, JOE)
        flags = {m.mailbox: m.flags for m in await list_messages(session, user.id)}
    assert flags == {"Audit": ("$Screened",), "Sent": ("$Screened",)}

    await make_user(store, "ann@example.com", script="keep;")
    [outcome] = await deliverer.deliver(transaction("ann@example.com"))
    assert outcome.mailboxes == ("Audit", "INBOX", "After")  # keep in effect: after.d runs


async def test_a_before_script_that_discards_ends_the_sequence(
        store: Store, deliverer: Deliverer, sieve_dir: Path) -> None:
    put(sieve_dir / "before.d", "spam.sieve", 'if header :is "subject" "Weekly report" '
                                              '{ discard; }\n')
    await make_user(store, script='require "fileinto";\nfileinto "Sent";\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert (outcome.reply.code, outcome.result) == (250, "discarded")
    assert await stored(store, JOE) == []


async def test_reject_after_an_earlier_keep_stores_and_records_why(
        store: Store, deliverer: Deliverer, sieve_dir: Path) -> None:
    put(sieve_dir / "before.d", "keep.sieve", "keep;\n")
    await make_user(store, script='require "reject";\nreject "go away";\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert (outcome.reply.code, outcome.result, outcome.mailboxes) == \
        (250, "stored", ("INBOX",))
    assert await errors(store, JOE) == [("runtime", REJECT_AFTER_KEEP)]


async def test_reject_in_the_user_script_alone_still_rejects(
        store: Store, deliverer: Deliverer, sieve_dir: Path) -> None:
    put(sieve_dir / "before.d", "flag.sieve", 'require "imap4flags";\naddflag "x";\n')
    await make_user(store, script='require "reject";\nreject "go away";\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert (outcome.reply.line(), outcome.result) == \
        (f"550 5.7.1 <{JOE}> go away", "rejected")


async def test_a_broken_global_script_is_skipped_and_mail_is_delivered(
        store: Store, deliverer: Deliverer, sieve_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    put(sieve_dir / "before.d", "broken.sieve", "if true {")
    put(sieve_dir / "after.d", "broken.sieve", "discard")
    await make_user(store, script='require "fileinto";\nfileinto "Junk";\n')
    with caplog.at_level(logging.ERROR, logger="mda.delivery"):
        [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("Junk",)
    assert sum("does not compile" in r.getMessage() for r in caplog.records) == 2
    assert await errors(store, JOE) == []  # the administrator's problem, not the user's


async def test_default_script_runs_between_global_scripts(
        store: Store, deliverer: Deliverer, sieve_dir: Path) -> None:
    put(sieve_dir / "before.d", "flag.sieve", 'require "imap4flags";\naddflag "$B";\n')
    put(sieve_dir, "default.sieve", 'require ["fileinto", "copy"];\nfileinto :copy "Archive";\n')
    put(sieve_dir / "after.d", "last.sieve", 'require ["fileinto", "copy"];\n'
                                             'fileinto :copy "Trash";\n')
    await make_user(store)
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("Archive", "Trash", "INBOX")
    await add_script(store, JOE, "mine", "discard;", active=True)
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.result == "discarded"  # the user's script replaces default.sieve


async def test_a_broken_user_script_keeps_and_global_scripts_still_run(
        store: Store, deliverer: Deliverer, sieve_dir: Path) -> None:
    put(sieve_dir / "before.d", "audit.sieve",
        'require ["fileinto", "copy"];\nfileinto :copy "Archive";\n')
    await make_user(store, script="fileinto")
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("Archive", "INBOX")
    [(kind, message)] = await errors(store, JOE)
    assert kind == "compile" and message.startswith("line 1")


async def test_runtime_error_in_a_later_script_keeps_the_earlier_actions(
        store: Store, deliverer: Deliverer, sieve_dir: Path) -> None:
    put(sieve_dir / "before.d", "audit.sieve",
        'require ["fileinto", "copy"];\nfileinto :copy "Archive";\n')
    await make_user(store, script='require "include";\ninclude "missing";\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("Archive", "INBOX")
    [(kind, message)] = await errors(store, JOE)
    assert kind == "runtime" and 'personal script "missing" does not exist' in message


# ---------------------------------------------------------------- include


async def test_include_personal_and_global(store: Store, deliverer: Deliverer,
                                           sieve_dir: Path) -> None:
    put(sieve_dir / "global", "spam.sieve",
        'require "fileinto";\nif header :contains "subject" "report" { fileinto "Junk"; }\n')
    await make_user(store)
    await add_script(store, JOE, "lists", 'require "imap4flags";\naddflag "$Personal";\n')
    await add_script(store, JOE, "main", 'require ["include"];\ninclude "lists";\n'
                                         'include :global "spam";\n', active=True)
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("Junk",)
    async with store.read() as session:
        user = await get_user(session, JOE)
        [message] = await list_messages(session, user.id)
    assert message.flags == ("$Personal",)


async def test_including_the_active_script_itself_is_circular(
        store: Store, deliverer: Deliverer) -> None:
    await make_user(store)
    await add_script(store, JOE, "main", 'require ["include", "fileinto"];\n'
                                         'fileinto "Junk";\ninclude "main";\n', active=True)
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("INBOX",)
    [(kind, message)] = await errors(store, JOE)
    assert kind == "runtime" and "circular" in message


# ---------------------------------------------------------------- duplicate

DUPLICATE_TO_TRASH = ('require ["duplicate", "fileinto"];\n'
                      'if duplicate { fileinto "Trash"; }\n')


async def test_a_second_delivery_of_a_message_id_is_a_duplicate(
        store: Store, deliverer: Deliverer) -> None:
    await make_user(store, script=DUPLICATE_TO_TRASH)
    await make_user(store, "ann@example.com", script=DUPLICATE_TO_TRASH)
    outcomes = await deliverer.deliver(transaction(JOE, "ann@example.com"))
    assert [o.mailboxes for o in outcomes] == [("INBOX",), ("INBOX",)]
    [outcome] = await deliverer.deliver(transaction(JOE, queue_id="Q2"))
    assert outcome.mailboxes == ("Trash",)
    other = MESSAGE.replace(b"<1@example.org>", b"<2@example.org>")
    [outcome] = await deliverer.deliver(transaction(JOE, data=other, queue_id="Q3"))
    assert outcome.mailboxes == ("INBOX",)


async def test_duplicate_records_expire_after_the_period(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    deliverer = Deliverer(store, settings_factory(store.url,
                                                  sieve_duplicate_default_period=60))
    await make_user(store, script=DUPLICATE_TO_TRASH)
    await deliverer.deliver(transaction(JOE))
    soon = dataclasses.replace(transaction(JOE, queue_id="Q2"),
                               received_at=RECEIVED_AT + timedelta(seconds=59))
    [outcome] = await deliverer.deliver(soon)
    assert outcome.mailboxes == ("Trash",)
    late = dataclasses.replace(transaction(JOE, queue_id="Q3"),
                               received_at=RECEIVED_AT + timedelta(seconds=61))
    [outcome] = await deliverer.deliver(late)
    assert outcome.mailboxes == ("INBOX",)


async def test_a_failed_delivery_records_no_duplicate(store: Store,
                                                      deliverer: Deliverer) -> None:
    await make_user(store, script=DUPLICATE_TO_TRASH, messages_limit=0)
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.result == "over_quota"
    async with store.transaction() as session:
        await set_quota(session, JOE, messages_limit=None)
    [outcome] = await deliverer.deliver(transaction(JOE, queue_id="Q2"))
    assert outcome.mailboxes == ("INBOX",)  # not taken for a duplicate of the failed one


async def test_discard_by_duplicate_is_recorded_for_the_next_time(
        store: Store, deliverer: Deliverer) -> None:
    await make_user(store, script='require "duplicate";\n'
                                  'if duplicate :header "subject" { discard; }\n')
    [first] = await deliverer.deliver(transaction(JOE))
    [second] = await deliverer.deliver(transaction(JOE, queue_id="Q2"))
    [third] = await deliverer.deliver(transaction(JOE, queue_id="Q3"))
    assert [first.result, second.result, third.result] == ["stored", "discarded", "discarded"]


# ---------------------------------------------------------------- special-use


async def test_fileinto_specialuse_finds_the_users_junk_mailbox(
        store: Store, deliverer: Deliverer) -> None:
    await make_user(store, script='require ["fileinto", "special-use"];\n'
                                  'fileinto :specialuse "\\\\Junk" "Spam";\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("Junk",)


async def test_specialuse_fallback_is_created_with_the_attribute(
        store: Store, deliverer: Deliverer) -> None:
    await make_user(store, script='require ["fileinto", "special-use", "mailbox"];\n'
                                  'fileinto :specialuse "\\\\Flagged" :create "Important";\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("Important",)
    async with store.read() as session:
        user = await get_user(session, JOE)
        uses = {b.name: b.special_use for b in await list_mailboxes(session, user.id)}
    assert uses["Important"] == "\\Flagged"
    [outcome] = await deliverer.deliver(transaction(JOE, queue_id="Q2"))
    assert outcome.mailboxes == ("Important",)


async def test_specialuse_without_such_mailbox_nor_create_keeps(
        store: Store, deliverer: Deliverer) -> None:
    await make_user(store, script='require ["fileinto", "special-use"];\n'
                                  'fileinto :specialuse "\\\\Flagged" "Important";\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("INBOX",)
    assert any("'Important' does not exist" in m for _, m in await errors(store, JOE))


async def test_specialuse_exists_answers_from_the_mailboxes(
        store: Store, deliverer: Deliverer) -> None:
    await make_user(store, script=(
        'require ["fileinto", "special-use", "imap4flags"];\n'
        'if specialuse_exists ["\\\\Junk", "\\\\trash"] { addflag "both"; }\n'
        'if specialuse_exists "Junk" "\\\\Junk" { addflag "junk"; }\n'
        'if specialuse_exists "Trash" "\\\\Junk" { addflag "wrong"; }\n'
        'if specialuse_exists "\\\\Flagged" { addflag "flagged"; }\n'
        'if specialuse_exists "Important" "\\\\Flagged" { addflag "important"; }\n'))
    async with store.transaction() as session:
        user = await get_user(session, JOE)
        await create_mailbox(session, user.id, "Important", special_use="\\Flagged")
    await deliverer.deliver(transaction(JOE))
    async with store.read() as session:
        [message] = await list_messages(session, user.id)
    assert set(message.flags) == {"both", "junk", "flagged", "important"}


# ---------------------------------------------------------------- settings


async def test_spamtest_uses_the_configured_header(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    deliverer = Deliverer(store, settings_factory(
        store.url, spamtest_header="X-Spam-Score: score=(-?[0-9]+(\\.[0-9]+)?)",
        spamtest_max=10))
    await make_user(store, script=(
        'require ["spamtest", "fileinto", "relational", "comparator-i;ascii-numeric"];\n'
        'if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto "Junk"; }\n'))
    spam = b"X-Spam-Score: score=7.5\r\n" + MESSAGE
    ham = b"X-Spam-Score: score=0.5\r\n" + MESSAGE
    outcomes = [(await deliverer.deliver(transaction(JOE, data=data)))[0].mailboxes
                for data in (spam, ham, MESSAGE)]
    assert outcomes == [("Junk",), ("INBOX",), ("INBOX",)]


async def test_limit_settings_apply_to_delivery(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    deliverer = Deliverer(store, settings_factory(store.url, sieve_max_actions=2))
    await make_user(store, script='require ["fileinto"];\nfileinto "Junk";\nfileinto "Sent";\n'
                                  'fileinto "Trash";\n')
    [outcome] = await deliverer.deliver(transaction(JOE))
    assert outcome.mailboxes == ("INBOX",)
    assert await errors(store, JOE) == [("runtime", "line 4: too many actions (limit 2)")]
