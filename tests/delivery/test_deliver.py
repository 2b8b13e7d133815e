"""Deliverer.check_recipient and Deliverer.deliver against a real SQLite store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mda.config import Settings
from mda.delivery import REDIRECT_UNAVAILABLE, Deliverer, normalize_line_endings
from mda.store import (
    DEFAULT_SPECIAL_MAILBOXES,
    Store,
    add_user,
    create_mailbox,
    find_user,
    get_user,
    list_mailboxes,
    list_messages,
    list_sieve_errors,
    message_bytes,
)
from mda.store.models import MessageBlob
from tests.delivery.conftest import MESSAGE, make_user, transaction

FILE_BY_SUBJECT = ('require ["fileinto"];\r\n'
                   'if header :contains "subject" "report" { fileinto "Reports"; }\r\n')
DEFAULT_NAMES = {name for name, _ in DEFAULT_SPECIAL_MAILBOXES}
PREFIX_LEN = len(b"Return-Path: <ann@example.org>\r\n"
                 b"Received: from mta.example.org ([192.0.2.7])\r\n"
                 b"\tby mx.test (mda) with LMTP id Q1\r\n"
                 b"\tfor <>; Wed, 01 May 2024 12:30:15 +0000\r\n"
                 b"Delivered-To: \r\n")


def prefix_len(rcpt: str) -> int:
    return PREFIX_LEN + 2 * len(rcpt)


async def stored(store: Store, address: str) -> list[tuple[str, int, bytes]]:
    """(mailbox, uid, bytes) of every stored message of the user."""
    async with store.read() as session:
        user = await get_user(session, address)
        infos = await list_messages(session, user.id)
        return [(m.mailbox, m.uid, await message_bytes(session, user.id, m.mailbox, m.uid))
                for m in infos]


async def usage(store: Store, address: str) -> tuple[int, int]:
    async with store.read() as session:
        user = await get_user(session, address)
        return user.storage_used, user.messages_used


async def errors(store: Store, address: str) -> list[tuple[str, str]]:
    async with store.read() as session:
        user = await get_user(session, address)
        return [(e.kind, e.message) for e in await list_sieve_errors(session, user.id)]


async def blob_count(store: Store) -> int:
    async with store.read() as session:
        return (await session.execute(select(func.count(MessageBlob.id)))).scalar_one()


# ---------------------------------------------------------------- RCPT


async def test_check_recipient(store: Store, deliverer: Deliverer) -> None:
    await make_user(store, "joe@example.com")
    await make_user(store, "full@example.com", messages_limit=0)
    assert await deliverer.check_recipient("joe@example.com") is None
    assert await deliverer.check_recipient("joe@EXAMPLE.com") is None
    assert await deliverer.check_recipient("joe+lists@example.com") is None
    assert (await deliverer.check_recipient("JOE@example.com")).line() == \
        "550 5.1.1 <JOE@example.com> User doesn't exist"
    assert (await deliverer.check_recipient("nobody@example.com")).enhanced == "5.1.1"
    assert (await deliverer.check_recipient("not an address")).enhanced == "5.1.1"
    assert (await deliverer.check_recipient("full@example.com")).line() == \
        "552 5.2.2 <full@example.com> Mailbox is full"


async def test_check_recipient_tempfails_when_the_store_is_down(
        missing_database_url: str, settings_factory: Callable[..., Settings]) -> None:
    url = missing_database_url
    async with Store(url) as store:
        reply = await Deliverer(store, settings_factory(url)).check_recipient("a@example.com")
    assert (reply.code, reply.enhanced) == (451, "4.3.0")


# ---------------------------------------------------------------- storing


async def test_implicit_keep_stores_in_inbox_with_the_prefix(store: Store,
                                                             deliverer: Deliverer) -> None:
    await make_user(store)
    [outcome] = await deliverer.deliver(transaction("joe@Example.com"))
    assert outcome.reply.line() == "250 2.0.0 <joe@Example.com> Saved"
    assert (outcome.result, outcome.mailboxes) == ("stored", ("INBOX",))
    [(mailbox, uid, data)] = await stored(store, "joe@example.com")
    assert (mailbox, uid) == ("INBOX", 1)
    assert data == (b"Return-Path: <ann@example.org>\r\n"
                    b"Delivered-To: joe@Example.com\r\n"
                    b"Received: from mta.example.org ([192.0.2.7])\r\n"
                    b"\tby mx.test (mda) with LMTP id Q1\r\n"
                    b"\tfor <joe@Example.com>; Wed, 01 May 2024 12:30:15 +0000\r\n" + MESSAGE)
    assert await usage(store, "joe@example.com") == (len(data), 1)


async def test_recipients_share_one_blob_with_their_own_headers(store: Store,
                                                                deliverer: Deliverer) -> None:
    for who in ("joe", "ann", "bob"):
        await make_user(store, f"{who}@example.com")
    outcomes = await deliverer.deliver(transaction("joe@example.com", "ann+x@example.com",
                                                   "bob@example.com"))
    assert [o.reply.code for o in outcomes] == [250, 250, 250]
    assert await blob_count(store) == 1
    [(_, _, ann)] = await stored(store, "ann@example.com")
    assert ann.endswith(MESSAGE)
    assert b"Delivered-To: ann+x@example.com\r\n" in ann and b"joe@" not in ann[:-len(MESSAGE)]
    assert await usage(store, "ann@example.com") == (len(ann), 1)


async def test_fileinto_existing_missing_create_and_autocreate(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    script = ('require ["fileinto", "mailbox"];\r\n'
              'fileinto "Reports";\r\nfileinto "Nope";\r\nfileinto :create "New/Box";\r\n')
    user = await make_user(store, script=script)
    async with store.transaction() as session:
        await create_mailbox(session, user.id, "Reports")
    deliverer = Deliverer(store, settings_factory(store.url))
    [outcome] = await deliverer.deliver(transaction("joe@example.com"))
    assert outcome.mailboxes == ("Reports", "INBOX", "New/Box")
    assert any("'Nope' does not exist; stored in INBOX" in m
               for _, m in await errors(store, "joe@example.com"))

    auto = Deliverer(store, settings_factory(store.url, mailbox_autocreate=True))
    [outcome] = await auto.deliver(transaction("joe@example.com"))
    assert outcome.mailboxes == ("Reports", "Nope", "New/Box")
    async with store.read() as session:
        names = [b.name for b in await list_mailboxes(session, user.id)]
    assert sorted(set(names) - DEFAULT_NAMES) == ["INBOX", "New/Box", "Nope", "Reports"]


async def test_reject_answers_550_571_and_stores_nothing(store: Store,
                                                         deliverer: Deliverer) -> None:
    await make_user(store, script='require "reject";\r\nreject "No thanks,\r\nreally";\r\n')
    await make_user(store, "ann@example.com")
    outcomes = await deliverer.deliver(transaction("joe@example.com", "ann@example.com"))
    assert outcomes[0].reply.line() == "550 5.7.1 <joe@example.com> No thanks, really"
    assert (outcomes[0].result, outcomes[0].mailboxes) == ("rejected", ())
    assert outcomes[1].reply.code == 250
    assert await stored(store, "joe@example.com") == []
    assert await usage(store, "joe@example.com") == (0, 0)


async def test_discard_and_all_rejected_leave_no_blob(store: Store,
                                                      deliverer: Deliverer) -> None:
    await make_user(store, script="discard;")
    [outcome] = await deliverer.deliver(transaction("joe@example.com"))
    assert (outcome.reply.code, outcome.result) == (250, "discarded")
    assert await stored(store, "joe@example.com") == []
    assert await blob_count(store) == 0


async def test_broken_script_keeps_into_inbox_and_logs_the_error(store: Store,
                                                                 deliverer: Deliverer) -> None:
    await make_user(store, script='require "fileinto";\nif true {\n  fileinto "X"\n}\n')
    [outcome] = await deliverer.deliver(transaction("joe@example.com"))
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("INBOX",))
    [(kind, message)] = await errors(store, "joe@example.com")
    assert kind == "compile" and message.startswith("line 4, column 1")


async def test_oversize_stored_script_is_recorded_by_size_not_position(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    deliverer = Deliverer(store, settings_factory(store.url, sieve_max_script_size=64))
    await make_user(store, script="keep;" + " " * 100)
    [outcome] = await deliverer.deliver(transaction("joe@example.com"))
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("INBOX",))
    [(kind, message)] = await errors(store, "joe@example.com")
    assert kind == "compile" and "too large" in message and not message.startswith("line")


async def test_redirect_is_an_error_and_keeps_never_a_silent_drop(store: Store,
                                                                  deliverer: Deliverer) -> None:
    await make_user(store, script='redirect "elsewhere@example.net";')
    [outcome] = await deliverer.deliver(transaction("joe@example.com"))
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("INBOX",))
    assert await errors(store, "joe@example.com") == [("runtime", REDIRECT_UNAVAILABLE)]


async def test_global_default_script_applies_without_an_active_script(
        store: Store, deliverer: Deliverer, tmp_path: Path) -> None:
    await make_user(store)
    (tmp_path / "sieve_scripts" / "default.sieve").write_text(FILE_BY_SUBJECT)
    [outcome] = await deliverer.deliver(transaction("joe@example.com"))
    assert outcome.mailboxes == ("INBOX",)  # Reports does not exist: INBOX, with a warning
    assert [k for k, _ in await errors(store, "joe@example.com")] == ["warning"]
    (tmp_path / "sieve_scripts" / "default.sieve").write_text("discard;")
    [outcome] = await deliverer.deliver(transaction("joe@example.com"))
    assert outcome.result == "discarded"


async def test_subaddress_envelope_reaches_the_script(store: Store,
                                                      deliverer: Deliverer) -> None:
    script = ('require ["fileinto", "envelope", "subaddress", "mailbox"];\r\n'
              'if envelope :detail "to" "lists" { fileinto :create "Lists"; }\r\n')
    await make_user(store, script=script)
    [outcome] = await deliverer.deliver(transaction("joe+lists@example.com"))
    assert outcome.mailboxes == ("Lists",)


# ---------------------------------------------------------------- quota


async def test_over_quota_at_data_and_other_recipients_unaffected(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    await make_user(store, "tiny@example.com", storage_limit=100)
    await make_user(store, "joe@example.com")
    outcomes = await Deliverer(store, settings_factory(store.url)).deliver(
        transaction("tiny@example.com", "joe@example.com"))
    assert outcomes[0].reply.line() == "552 5.2.2 <tiny@example.com> Mailbox is full"
    assert (outcomes[0].result, outcomes[1].result) == ("over_quota", "stored")
    assert await usage(store, "tiny@example.com") == (0, 0)

    tempfail = Deliverer(store, settings_factory(store.url, quota_full_tempfail=True))
    [outcome] = await tempfail.deliver(transaction("tiny@example.com"))
    assert (outcome.reply.code, outcome.reply.enhanced) == (452, "4.2.2")


async def test_two_copies_where_only_one_fits_store_neither(store: Store,
                                                            deliverer: Deliverer) -> None:
    script = 'require ["fileinto", "mailbox"];\r\nfileinto :create "A";\r\nkeep;\r\n'
    one_copy = prefix_len("joe@example.com") + len(MESSAGE)
    await make_user(store, script=script, storage_limit=one_copy + one_copy // 2)
    [outcome] = await deliverer.deliver(transaction("joe@example.com"))
    assert outcome.result == "over_quota"
    assert await stored(store, "joe@example.com") == []
    assert await usage(store, "joe@example.com") == (0, 0)
    async with store.read() as session:
        user = await get_user(session, "joe@example.com")
        assert {b.name for b in await list_mailboxes(session, user.id)} == \
            {"INBOX", *DEFAULT_NAMES}


# ---------------------------------------------------------------- hostile input


@pytest.mark.parametrize(("data", "expected_body"), [
    (b"Subject: lf\nX: y\n\nbody\n", b"Subject: lf\r\nX: y\r\n\r\nbody\r\n"),
    (b"Subject: caf\xe9 \xff\r\n\r\n8-bit\r\n", b"Subject: caf\xe9 \xff\r\n\r\n8-bit\r\n"),
    (b"Subject: nul\x00\r\n\r\nA\x00B\r\n", b"Subject: nul\x00\r\n\r\nA\x00B\r\n"),
    (b"no headers at all\r\njust text\r\n", b"\r\nno headers at all\r\njust text\r\n"),
    (b"", b"\r\n"),
])
async def test_odd_messages_are_stored_not_crashed_on(store: Store, deliverer: Deliverer,
                                                      data: bytes, expected_body: bytes) -> None:
    await make_user(store, script='if header :contains "subject" "x" { discard; }')
    [outcome] = await deliverer.deliver(transaction("joe@example.com", data=data))
    assert outcome.result == "stored", outcome
    [(_, _, message)] = await stored(store, "joe@example.com")
    assert message.endswith(b"+0000\r\n" + expected_body)
    assert await usage(store, "joe@example.com") == (len(message), 1)


# ---------------------------------------------------------------- failures


async def test_store_down_gives_451_for_every_recipient(
        missing_database_url: str, settings_factory: Callable[..., Settings]) -> None:
    url = missing_database_url
    async with Store(url) as store:
        outcomes = await Deliverer(store, settings_factory(url)).deliver(
            transaction("a@example.com", "b@example.com"))
    assert [(o.recipient, o.reply.line(), o.result) for o in outcomes] == [
        ("a@example.com", "451 4.3.0 <a@example.com> Temporary internal failure, try again "
         "later", "error"),
        ("b@example.com", "451 4.3.0 <b@example.com> Temporary internal failure, try again "
         "later", "error")]


async def test_a_bug_is_451_with_a_logged_traceback_and_no_leak(
        store: Store, deliverer: Deliverer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Fault injection: the store function appending a copy raises for one user only."""
    import mda.delivery.deliverer as module

    await make_user(store, "joe@example.com")
    await make_user(store, "ann@example.com")
    real_append = module.append_message

    async def failing_append(session, *, user_id, **kwargs):
        if user_id == 1:
            raise RuntimeError("secret internals")
        return await real_append(session, user_id=user_id, **kwargs)

    monkeypatch.setattr(module, "append_message", failing_append)
    with caplog.at_level(logging.ERROR, logger="mda.delivery"):
        outcomes = await deliverer.deliver(transaction("joe@example.com", "ann@example.com"))
    assert (outcomes[0].reply.code, outcomes[0].result) == (451, "error")
    assert "secret" not in outcomes[0].reply.line()
    assert outcomes[1].result == "stored"
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)
    assert await blob_count(store) == 1


async def test_recipient_deleted_since_rcpt_is_unknown(store: Store,
                                                       deliverer: Deliverer) -> None:
    [outcome] = await deliverer.deliver(transaction("gone@example.com"))
    assert (outcome.reply.enhanced, outcome.result) == ("5.1.1", "unknown_user")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8")))
async def test_any_bytes_are_stored_as_received_with_crlf(store: Store, deliverer: Deliverer,
                                                          data: bytes) -> None:
    """Whatever arrives is stored (CRLF-normalised, after the prefix) and counted exactly."""
    async with store.transaction() as session:
        user = (await find_user(session, "any@example.com")
                or await add_user(session, "any@example.com"))
    before = await usage(store, user.address)
    [outcome] = await deliverer.deliver(transaction("any@example.com", data=data))
    assert outcome.result == "stored", outcome
    [*_, (_, _, message)] = await stored(store, "any@example.com")
    assert message.endswith(normalize_line_endings(data))
    assert message.replace(b"\r\n", b"").count(b"\n") == 0
    after = await usage(store, user.address)
    assert after == (before[0] + len(message), before[1] + 1)


async def test_editheader_version_is_stored_for_that_recipient_only(
        store: Store, deliverer: Deliverer) -> None:
    await make_user(store, script='require ["editheader", "fileinto", "mailbox"];\r\n'
                                  'fileinto :create "Before";\r\n'
                                  'addheader "X-Tag" "yes";\r\nkeep;\r\n')
    await make_user(store, "ann@example.com")
    outcomes = await deliverer.deliver(transaction("joe@example.com", "ann@example.com"))
    assert [o.mailboxes for o in outcomes] == [("Before", "INBOX"), ("INBOX",)]
    joe = {mailbox: data for mailbox, _, data in await stored(store, "joe@example.com")}
    [(_, _, ann)] = await stored(store, "ann@example.com")
    assert b"X-Tag: yes\r\n" in joe["INBOX"] and joe["INBOX"].endswith(b"Hello Joe\r\n")
    assert b"X-Tag" not in joe["Before"] and joe["Before"].endswith(MESSAGE)
    assert ann.endswith(MESSAGE)
    assert await blob_count(store) == 2
    total = sum(len(data) for data in joe.values())
    assert await usage(store, "joe@example.com") == (total, 2)
