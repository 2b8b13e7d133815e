"""Redirect, vacation and notify through a real SMTP capture sink, with a real SQLite store.

The Deliverer runs in the test's event loop; the sink is a real aiosmtpd server in its own
thread. What the sink received is exactly what the MTA would have been handed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta

import asyncio
import time

import pytest

from mda.config import Settings
from mda.delivery import Deliverer, outbound_warnings
from mda.delivery.outbound import outbound_unavailable
from mda.sieve import compile_script
from mda.store import Store, create_mailbox, get_user, list_mailboxes, list_sieve_errors
from tests.delivery.conftest import RECEIVED_AT, make_user, transaction
from tests.delivery.test_deliver import errors, stored
from tests.outbound.sink import Captured, CaptureSink, Tarpit, closed_port

VACATION = 'require "vacation";\nvacation :days 3 "I am away until Monday.";\n'


def message(*, sender: str = "Ann <ann@example.org>", to: str = "joe@example.com",
            subject: str = "Lunch?", extra: str = "", msgid: str = "<m1@example.org>") -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n"
    return (head + extra + "\r\nAre you free?\r\n").encode()


@pytest.fixture
def sink() -> Iterator[CaptureSink]:
    with CaptureSink() as running:
        yield running


@pytest.fixture
def outbound(store: Store, settings_factory: Callable[..., Settings],
             sink: CaptureSink) -> Callable[..., Deliverer]:
    """A Deliverer submitting to the sink; keyword arguments override settings."""

    def make(**overrides: object) -> Deliverer:
        values: dict[str, object] = {"submission_url": sink.url, "submission_timeout": 5}
        values.update(overrides)
        return Deliverer(store, settings_factory(store.url, **values))

    return make


async def only_sent(store: Store, sink: CaptureSink, deliverer: Deliverer, script: str,
                    data: bytes | None = None) -> Captured:
    """Add joe with `script`, deliver one message to him, return what the sink got."""
    await make_user(store, script=script)
    await deliverer.deliver(transaction("joe@example.com", data=data or message()))
    [sent] = sink.messages
    return sent


async def mailbox_names(store: Store, address: str) -> list[str]:
    async with store.read() as session:
        user = await get_user(session, address)
        return [m.name for m in await list_mailboxes(session, user.id)]


# ---------------------------------------------------------------- redirect


async def test_redirect_goes_to_the_mta_with_the_original_sender(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='redirect "joe@elsewhere.example";')
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.line(), outcome.result) == (
        "250 2.0.0 <joe@example.com> Redirected", "redirected")
    assert await stored(store, "joe@example.com") == []  # redirect cancels the keep
    [sent] = sink.messages
    assert (sent.sender, sent.recipients) == ("ann@example.org", ("joe@elsewhere.example",))
    assert sent.data.startswith(b"X-Sieve-Redirected-From: <joe@example.com>\r\n")
    assert sent.data.endswith(message())  # the message itself is unchanged


async def test_redirect_copy_stores_and_sends(store: Store, sink: CaptureSink,
                                              outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='require "copy";\nredirect :copy "joe@elsewhere.example";')
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert (outcome.result, outcome.mailboxes) == ("stored", ("INBOX",))
    assert len(sink.messages) == 1


@pytest.mark.parametrize(("policy", "expected"), [
    ("recipient", "joe@example.com"),
    ("orig_recipient", "joe+work@example.com"),
    ("<>", ""),
    ("<bounces@example.com>", "bounces@example.com"),
])
async def test_redirect_envelope_sender_policy(store: Store, sink: CaptureSink,
                                               outbound: Callable[..., Deliverer],
                                               policy: str, expected: str) -> None:
    await make_user(store, script='redirect "joe@elsewhere.example";')
    await outbound(redirect_envelope_sender=policy).deliver(
        transaction("joe+work@example.com", data=message()))
    assert [m.sender for m in sink.messages] == [expected]


async def test_null_sender_stays_null_when_redirected(store: Store, sink: CaptureSink,
                                                      outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='redirect "joe@elsewhere.example";')
    await outbound().deliver(transaction("joe@example.com", data=message(), mail_from=""))
    assert [m.sender for m in sink.messages] == [""]


async def test_a_message_this_user_redirected_before_is_kept_not_redirected(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='redirect "joe@elsewhere.example";')
    looped = b"X-Sieve-Redirected-From: <JOE@example.com>\r\n" + message()
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=looped))
    assert (outcome.result, outcome.mailboxes) == ("stored", ("INBOX",))  # keep not cancelled
    assert sink.messages == []
    [(kind, text)] = await errors(store, "joe@example.com")
    assert kind == "warning" and "X-Sieve-Redirected-From" in text and "loop" in text


async def test_a_message_another_user_redirected_is_redirected(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='redirect "joe@elsewhere.example";')
    forwarded = b"X-Sieve-Redirected-From: <ann@example.com>\r\n" + message()
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=forwarded))
    assert outcome.result == "redirected"
    [sent] = sink.messages
    assert sent.data.count(b"X-Sieve-Redirected-From") == 2


async def test_the_same_message_is_redirected_once_per_period(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    """Two subaddresses of one user in one transaction, and the same message again later:
    one redirect per message and target within sieve_redirect_duplicate_period."""
    await make_user(store, script='redirect "joe@elsewhere.example";')
    deliverer = outbound(sieve_redirect_duplicate_period=3600)
    outcomes = await deliverer.deliver(
        transaction("joe+a@example.com", "joe+b@example.com", data=message()))
    assert [o.result for o in outcomes] == ["redirected", "redirected"]
    assert len(sink.messages) == 1
    later = transaction("joe@example.com", data=message(), queue_id="Q2")
    await deliverer.deliver(later)
    assert len(sink.messages) == 1
    other = transaction("joe@example.com", data=message(msgid="<m2@example.org>"))
    await deliverer.deliver(other)
    assert len(sink.messages) == 2
    await deliverer.deliver(replace(later, received_at=RECEIVED_AT + timedelta(hours=1)))
    assert len(sink.messages) == 3  # the record expired


async def test_mta_down_defers_the_recipient_and_stores_nothing(
        store: Store, settings_factory: Callable[..., Settings], sink: CaptureSink) -> None:
    await make_user(store, script='require "copy";\nredirect :copy "joe@elsewhere.example";')
    await make_user(store, "ann@example.com")
    down = Deliverer(store, settings_factory(
        store.url, submission_url=f"smtp://127.0.0.1:{closed_port()}", submission_timeout=5))
    joe, ann = await down.deliver(
        transaction("joe@example.com", "ann@example.com", data=message()))
    assert (joe.reply.code, joe.reply.enhanced, joe.result) == (451, "4.3.0", "error")
    assert ann.result == "stored"  # the other recipient is not affected
    assert await stored(store, "joe@example.com") == []
    [(kind, text)] = await errors(store, "joe@example.com")  # why, for `mda sieve errors`
    assert kind == "runtime" and "redirect to <joe@elsewhere.example>" in text
    assert "cannot reach" in text and "the MTA will retry" in text
    # The MTA retries once it is back: now it goes through, and only once.
    up = Deliverer(store, settings_factory(store.url, submission_url=sink.url))
    [joe] = await up.deliver(transaction("joe@example.com", data=message()))
    assert (joe.result, len(sink.messages)) == ("stored", 1)


async def test_a_temporarily_refused_redirect_rolls_back_the_copy(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='require "copy";\nredirect :copy "nobody@elsewhere.example";')
    sink.refuse("nobody@elsewhere.example", reply="450 4.2.0 greylisted")
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.code, outcome.reply.enhanced) == (451, "4.3.0")
    assert await stored(store, "joe@example.com") == []
    [(_, text)] = await errors(store, "joe@example.com")
    assert "450 4.2.0 greylisted" in text


async def test_a_permanently_refused_redirect_is_a_runtime_error_and_keeps(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    """A mistyped target (5xx to RCPT): 250 and the implicit keep, not 451 for days."""
    await make_user(store, script='redirect "nobdy@elsewhere.example";')
    sink.refuse("nobdy@elsewhere.example", reply="550 5.1.1 no such user here")
    deliverer = outbound(sieve_redirect_duplicate_period=3600)
    [outcome] = await deliverer.deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.line(), outcome.result, outcome.mailboxes) == (
        "250 2.0.0 <joe@example.com> Saved", "stored", ("INBOX",))
    [(kind, text)] = await errors(store, "joe@example.com")
    assert kind == "runtime" and "redirect to <nobdy@elsewhere.example>" in text
    assert "550 5.1.1 no such user here" in text and "kept instead" in text
    # No redirect record was left behind: the same message again is tried again, not
    # taken as "already redirected" (which would drop it).
    sink.allow("nobdy@elsewhere.example")
    [outcome] = await deliverer.deliver(transaction("joe@example.com", data=message()))
    assert (outcome.result, len(sink.messages)) == ("redirected", 1)
    assert len(await stored(store, "joe@example.com")) == 1


async def test_a_permanent_refusal_keeps_alongside_the_other_actions(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='require ["fileinto", "mailbox"];\n'
                                  'fileinto :create "Work";\nredirect "bad@elsewhere.example";\n'
                                  'redirect "good@elsewhere.example";\n')
    sink.refuse("bad@elsewhere.example")
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("Work", "INBOX"))
    assert [m.recipients for m in sink.messages] == [("good@elsewhere.example",)]


async def test_a_permanently_refused_redirect_copy_is_stored_once(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='require "copy";\nredirect :copy "nobody@elsewhere.example";')
    sink.refuse("nobody@elsewhere.example")
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("INBOX",))
    assert len(await stored(store, "joe@example.com")) == 1


async def test_a_redirect_taken_before_a_failure_is_not_sent_again(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='redirect "one@elsewhere.example";\n'
                                  'redirect "two@elsewhere.example";\n')
    sink.refuse("two@elsewhere.example", reply="451 4.3.0 try later")
    deliverer = outbound()
    [outcome] = await deliverer.deliver(transaction("joe@example.com", data=message()))
    assert outcome.reply.code == 451
    sink.allow("two@elsewhere.example")
    [outcome] = await deliverer.deliver(transaction("joe@example.com", data=message()))
    assert outcome.result == "redirected"
    assert [m.recipients for m in sink.messages] == [("one@elsewhere.example",),
                                                     ("two@elsewhere.example",)]


async def test_over_quota_sends_nothing(store: Store, sink: CaptureSink,
                                        outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='require "copy";\nredirect :copy "joe@elsewhere.example";',
                    storage_limit=10)
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert outcome.result == "over_quota"
    assert sink.messages == []


async def test_without_submission_redirect_vacation_notify_keep_and_record_an_error(
        store: Store, deliverer: Deliverer) -> None:
    script = ('require ["vacation", "enotify", "fileinto"];\nfileinto "Work";\n'
              'redirect "joe@elsewhere.example";\nvacation "away";\n'
              'notify "mailto:joe@pager.example";\n')
    await make_user(store, script=script)
    [outcome] = await deliverer.deliver(transaction("joe@example.com", data=message()))
    assert (outcome.result, outcome.mailboxes) == ("stored", ("INBOX",))
    assert await errors(store, "joe@example.com") == [
        ("runtime", outbound_unavailable(["notify", "redirect", "vacation"]))]


# ---------------------------------------------------------------- vacation


async def test_vacation_reply_once_per_sender_and_period(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script=VACATION)
    deliverer = outbound()
    [outcome] = await deliverer.deliver(transaction("joe@example.com", data=message()))
    assert outcome.mailboxes == ("INBOX",)  # vacation does not cancel the keep
    [reply] = sink.messages
    assert (reply.sender, reply.recipients) == ("", ("ann@example.org",))
    parsed = reply.message
    assert parsed["Auto-Submitted"].startswith("auto-replied")
    assert (parsed["Subject"], parsed["To"], parsed["From"]) == (
        "Auto: Lunch?", "ann@example.org", "joe@example.com")
    assert (parsed["In-Reply-To"], parsed["References"]) == (
        "<m1@example.org>", "<m1@example.org>")
    assert parsed["Date"] and parsed["Message-ID"].endswith("@mx.test>")
    assert parsed.get_content().strip() == "I am away until Monday."
    # Again within 3 days: no second reply; another sender: a reply.
    await deliverer.deliver(transaction("joe@example.com", data=message(msgid="<m2@x>")))
    assert len(sink.messages) == 1
    await deliverer.deliver(transaction("joe@example.com", mail_from="bob@example.org",
                                        data=message(sender="bob@example.org")))
    assert [m.recipients for m in sink.messages][-1] == ("bob@example.org",)
    # After the period the first sender gets a reply again.
    later = replace(transaction("joe@example.com", data=message()),
                    received_at=RECEIVED_AT + timedelta(days=3, seconds=1))
    await deliverer.deliver(later)
    assert [m.recipients for m in sink.messages] == [
        ("ann@example.org",), ("bob@example.org",), ("ann@example.org",)]


async def test_vacation_handles_are_tracked_apart(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    script = ('require "vacation";\nif header :contains "subject" "a" '
              '{ vacation :handle "one" "first"; } else { vacation :handle "two" "second"; }\n')
    await make_user(store, script=script)
    deliverer = outbound()
    await deliverer.deliver(transaction("joe@example.com", data=message(subject="a")))
    await deliverer.deliver(transaction("joe@example.com", data=message(subject="b")))
    await deliverer.deliver(transaction("joe@example.com", data=message(subject="a")))
    assert [m.message.get_content().strip() for m in sink.messages] == ["first", "second"]


NO_REPLY = {
    "null sender": {"mail_from": ""},
    "own address as sender": {"mail_from": "joe@example.com"},
    "an :addresses alias as sender": {"mail_from": "j.doe@example.com"},
    "MAILER-DAEMON": {"mail_from": "MAILER-DAEMON@example.org"},
    "owner- list address": {"mail_from": "owner-knitting@example.org"},
    "-request list address": {"mail_from": "knitting-request@example.org"},
    "LISTSERV": {"mail_from": "listserv@example.org"},
    "majordomo": {"mail_from": "majordomo@example.org"},
    "List-Id": {"extra": "List-Id: Knitting <knitting.example.org>\r\n"},
    "List-Unsubscribe": {"extra": "List-Unsubscribe: <mailto:leave@example.org>\r\n"},
    "Auto-Submitted auto-generated": {"extra": "Auto-Submitted: auto-generated\r\n"},
    "Auto-Submitted auto-replied": {"extra": "Auto-Submitted: auto-replied\r\n"},
    "Precedence bulk": {"extra": "Precedence: bulk\r\n"},
    "Precedence junk": {"extra": "Precedence: junk\r\n"},
    "Precedence list": {"extra": "Precedence: list\r\n"},
    "user not in To/Cc": {"to": "everyone@example.com"},
}


@pytest.mark.parametrize("case", list(NO_REPLY), ids=list(NO_REPLY))
async def test_vacation_does_not_reply(store: Store, sink: CaptureSink,
                                       outbound: Callable[..., Deliverer], case: str) -> None:
    """RFC 5230 §4.5 and RFC 3834 §2: who never gets an automatic reply."""
    await make_user(store, script='require "vacation";\n'
                                  'vacation :addresses "j.doe@example.com" "away";\n')
    given = dict(NO_REPLY[case])
    mail_from = given.pop("mail_from", "ann@example.org")
    [outcome] = await outbound().deliver(transaction(
        "joe@example.com", mail_from=mail_from, data=message(**given)))
    assert outcome.mailboxes == ("INBOX",)
    assert sink.messages == []


@pytest.mark.parametrize("field", ["To", "Cc", "Bcc", "Resent-To", "Resent-Cc"])
async def test_vacation_replies_when_the_user_is_in_a_recipient_field(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer], field: str) -> None:
    await make_user(store, script='require "vacation";\n'
                                  'vacation :addresses "j.doe@example.com" "away";\n')
    data = message(to="list@example.com", extra=f"{field}: J. Doe <j.doe@example.com>\r\n")
    await outbound().deliver(transaction("joe@example.com", data=data))
    [reply] = sink.messages
    assert reply.message["From"] == "j.doe@example.com"  # the address the mail was sent to


async def test_vacation_subject_from_and_non_ascii(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    script = ('require "vacation";\nvacation :subject "Abwesend: Grüße" '
              ':from "Jörg Doe <joe@example.com>" "Bin weg. Schöne Grüße";\n')
    reply = await only_sent(store, sink, outbound(), script)
    assert reply.data.isascii()  # encoded words and quoted-printable
    parsed = reply.message
    assert parsed["Subject"] == "Abwesend: Grüße"
    assert parsed["From"].addresses[0].display_name == "Jörg Doe"
    assert parsed.get_content().strip() == "Bin weg. Schöne Grüße"


async def test_vacation_default_subject_decodes_the_original(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    data = message(subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=", extra="References: <r0@x>\r\n")
    parsed = (await only_sent(store, sink, outbound(), VACATION, data)).message
    assert parsed["Subject"] == "Auto: Grüße"
    assert parsed["References"] == "<r0@x> <m1@example.org>"


async def test_vacation_mime_body_is_used_as_the_entity(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    script = ('require "vacation";\nvacation :mime text:\r\n'
              'Content-Type: text/html; charset=us-ascii\r\n\r\n<p>Away</p>\r\n.\r\n;\n')
    parsed = (await only_sent(store, sink, outbound(), script)).message
    assert parsed.get_content_type() == "text/html"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed.get_content().strip() == "<p>Away</p>"


async def test_a_failed_vacation_reply_is_dropped_and_mail_is_delivered(
        store: Store, settings_factory: Callable[..., Settings], sink: CaptureSink) -> None:
    await make_user(store, script=VACATION)
    down = Deliverer(store, settings_factory(
        store.url, submission_url=f"smtp://127.0.0.1:{closed_port()}", submission_timeout=5))
    [outcome] = await down.deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("INBOX",))
    sink.fail_data("451 4.3.0 try again later")
    up = Deliverer(store, settings_factory(store.url, submission_url=sink.url))
    [outcome] = await up.deliver(transaction("joe@example.com", data=message()))
    assert outcome.result == "stored"
    sink.fail_data(None)
    # No record was written for the replies that failed: the next message gets one.
    await up.deliver(transaction("joe@example.com", data=message()))
    assert len(sink.messages) == 1


# ---------------------------------------------------------------- notify


async def test_notify_mailto_sends_a_notification(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    script = ('require "enotify";\nnotify :importance "1" :message "New: lunch" '
              '"mailto:pager@example.net?cc=desk@example.net&body=Look%20now";\n')
    await make_user(store, script=script)
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert outcome.mailboxes == ("INBOX",)  # notify does not cancel the keep
    [note] = sink.messages
    assert (note.sender, note.recipients) == ("", ("pager@example.net", "desk@example.net"))
    parsed = note.message
    assert parsed["Auto-Submitted"] == 'auto-notified; owner-email="joe@example.com"'
    assert (parsed["To"], parsed["Cc"], parsed["Subject"]) == (
        "pager@example.net", "desk@example.net", "New: lunch")
    assert (parsed["Importance"], parsed["References"]) == ("high", "<m1@example.org>")
    assert parsed.get_content().strip() == "Look now"


async def test_notify_subject_falls_back_to_the_original(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    parsed = (await only_sent(store, sink, outbound(),
                              'require "enotify";\nnotify "mailto:pager@example.net";\n')).message
    assert parsed["Subject"] == "Lunch?"
    assert "Lunch?" in parsed.get_content()


async def test_no_notification_for_automatic_mail(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='require "enotify";\nnotify "mailto:pager@example.net";\n')
    data = message(extra="Auto-Submitted: auto-notified\r\n")
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=data))
    assert outcome.result == "stored"
    assert sink.messages == []


async def test_a_failed_notification_defers_the_recipient(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    await make_user(store, script='require "enotify";\nnotify "mailto:pager@example.net";\n')
    sink.fail_data("451 4.3.0 try later")
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.code, outcome.reply.enhanced) == (451, "4.3.0")
    assert await stored(store, "joe@example.com") == []


async def test_a_notification_refused_for_good_is_a_runtime_error(
        store: Store, sink: CaptureSink, outbound: Callable[..., Deliverer]) -> None:
    script = ('require "enotify";\nnotify "mailto:pager@example.net?cc=gone@example.net";\n'
              'discard;\n')
    await make_user(store, script=script)
    sink.refuse("gone@example.net")  # the pager still gets it
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("INBOX",))  # discard undone
    assert [m.recipients for m in sink.messages] == [("pager@example.net",)]
    [(kind, text)] = await errors(store, "joe@example.com")
    assert kind == "runtime" and "<gone@example.net> (550 5.1.1" in text
    sink.fail_data("554 5.6.0 no thanks")
    [outcome] = await outbound().deliver(transaction("joe@example.com", data=message()))
    assert (outcome.reply.code, outcome.mailboxes) == (250, ("INBOX",))
    assert "554 5.6.0 no thanks" in (await errors(store, "joe@example.com"))[-1][1]


# ---------------------------------------------------------------- the submission budget


async def test_a_stalled_mta_defers_within_the_budget(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    """A tarpit MTA (never answers) and a 30 s step timeout: the transaction's replies all
    come within MDA_SUBMISSION_BUDGET, not one step timeout per redirecting recipient."""
    for name in ("a", "b", "c"):
        await make_user(store, f"{name}@example.com", script='redirect "x@elsewhere.example";')
    await make_user(store, "plain@example.com")
    await make_user(store, "away@example.com", script=VACATION)
    async with Tarpit() as tarpit:
        deliverer = Deliverer(store, settings_factory(
            store.url, submission_url=tarpit.url, submission_timeout=30,
            submission_budget=1.5))
        started = time.monotonic()
        async with asyncio.timeout(10):
            outcomes = await deliverer.deliver(transaction(
                "a@example.com", "plain@example.com", "b@example.com", "c@example.com",
                "away@example.com", data=message()))
        elapsed = time.monotonic() - started
        assert tarpit.connections == 1  # once spent, nothing more is tried
    assert 1.5 <= elapsed < 3.0
    assert [(o.reply.code, o.result) for o in outcomes] == [
        (451, "error"), (250, "stored"), (451, "error"), (451, "error"), (250, "stored")]
    for name in ("b", "c"):
        [(_, text)] = await errors(store, f"{name}@example.com")
        assert "not tried" in text and "MDA_SUBMISSION_BUDGET" in text
    [(_, text)] = await errors(store, "a@example.com")
    assert "no answer within" in text


# ---------------------------------------------------------------- detail mailbox


async def test_detail_mailbox_is_the_default_mailbox(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    user = await make_user(store)
    async with store.transaction() as session:
        await create_mailbox(session, user.id, "lists")
    deliverer = Deliverer(store, settings_factory(store.url, save_to_detail_mailbox=True))
    [outcome] = await deliverer.deliver(transaction("joe+lists@example.com"))
    assert outcome.mailboxes == ("lists",)
    [(_, _, data)] = await stored(store, "joe@example.com")
    assert b"Delivered-To: joe+lists@example.com\r\n" in data
    # A detail with no such mailbox falls back to INBOX, and nothing is created.
    [outcome] = await deliverer.deliver(transaction("joe+nosuch@example.com"))
    assert outcome.mailboxes == ("INBOX",)
    assert "nosuch" not in await mailbox_names(store, "joe@example.com")


async def test_detail_mailbox_is_created_with_autocreate(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    await make_user(store)
    deliverer = Deliverer(store, settings_factory(store.url, save_to_detail_mailbox=True,
                                                  mailbox_autocreate=True))
    [outcome] = await deliverer.deliver(transaction("joe+shop@example.com"))
    assert outcome.mailboxes == ("shop",)
    assert "shop" in await mailbox_names(store, "joe@example.com")


async def test_detail_mailbox_takes_keep_but_not_fileinto(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    script = 'require ["fileinto", "mailbox"];\nkeep;\nfileinto :create "Work";\n'
    user = await make_user(store, script=script)
    async with store.transaction() as session:
        await create_mailbox(session, user.id, "lists")
    deliverer = Deliverer(store, settings_factory(store.url, save_to_detail_mailbox=True))
    [outcome] = await deliverer.deliver(transaction("joe+lists@example.com"))
    assert outcome.mailboxes == ("lists", "Work")


async def test_detail_mailbox_is_off_by_default(store: Store, deliverer: Deliverer) -> None:
    user = await make_user(store)
    async with store.transaction() as session:
        await create_mailbox(session, user.id, "lists")
    [outcome] = await deliverer.deliver(transaction("joe+lists@example.com"))
    assert outcome.mailboxes == ("INBOX",)


async def test_a_broken_script_keeps_into_the_detail_mailbox(
        store: Store, settings_factory: Callable[..., Settings]) -> None:
    user = await make_user(store, script="this is not sieve")
    async with store.transaction() as session:
        await create_mailbox(session, user.id, "lists")
    deliverer = Deliverer(store, settings_factory(store.url, save_to_detail_mailbox=True))
    [outcome] = await deliverer.deliver(transaction("joe+lists@example.com"))
    assert outcome.mailboxes == ("lists",)
    async with store.read() as session:
        assert [e.kind for e in await list_sieve_errors(session, user.id)] == ["compile"]


# ---------------------------------------------------------------- PUTSCRIPT warnings


def test_outbound_warnings_name_each_sending_command_once(
        settings_factory: Callable[..., Settings], missing_database_url: str) -> None:
    program = compile_script('require ["vacation", "enotify"];\n'
                             'if true { notify "mailto:a@example.net"; redirect "a@b.example"; }\n'
                             'else { redirect "c@d.example"; }\nvacation "away";\n')
    warnings = outbound_warnings(program, settings_factory(missing_database_url))
    assert [w.split(":")[0] for w in warnings] == ["line 2", "line 4", "line 2"]
    assert [w.split()[2] for w in warnings] == ["redirect", "vacation", "notify"]
    assert outbound_warnings(program, settings_factory(missing_database_url,
                                                       submission_url="smtp://mx")) == []
    assert outbound_warnings(compile_script("keep;"),
                             settings_factory(missing_database_url)) == []
