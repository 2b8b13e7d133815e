"""mda behind a real Postfix (see conftest): SMTP into Postfix, LMTP from Postfix's `lmtp`
client to a real `mda serve`, Postfix's own bounces (DSN, RFC 3464) and relayed mail caught
at the sink, the store read back through the `mda` command line.

The Postfix configuration is the one docs/postfix.md gives, so these tests are its proof.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import subprocess
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess
from tests.e2e.test_lmtp_extensions import add_users, cli_json
from tests.outbound.sink import Captured
from tests.postfix.conftest import DOMAIN, SENDER, MailSystem, build_address_map

Run = Callable[..., subprocess.CompletedProcess[bytes]]

ALICE, BOB, CAROL, DAVE = (f"{name}@{DOMAIN}" for name in ("alice", "bob", "carol", "Dave"))


def put_script(mda: Run, tmp_path: Path, user: str, source: str) -> None:
    path = tmp_path / f"{user}.sieve"
    path.write_text(source)
    mda("sieve", "put", user, "main", str(path), "--activate", check=True)


def message(subject: str, *, to: str = ALICE, sender: str = SENDER, extra: str = "",
            body: str = "Hello.\r\n") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{hashlib.sha1(subject.encode()).hexdigest()}@remote.test>\r\n"
            f"{extra}\r\n{body}").encode()


def stored(mda: Run, user: str) -> list[dict]:
    return cli_json(mda, "message", "list", user)


def messages_used(mda: Run) -> dict[str, int]:
    """{address: messages stored} for every user, from one `mda user list`."""
    return {user["address"]: user["messages_used"] for user in cli_json(mda, "user", "list")}


def dsn_recipients(bounce: Captured) -> dict[str, tuple[str, str]]:
    """{final recipient: (Status, Diagnostic-Code)} from a DSN's message/delivery-status
    part (RFC 3464 §2.3)."""
    report = bounce.message
    assert report.get_content_type() == "multipart/report", bounce.data[:500]
    [status_part] = [p for p in report.iter_parts()
                     if p.get_content_type() == "message/delivery-status"]
    found = {}
    for fields in status_part.get_payload()[1:]:  # the first block is per-message
        recipient = str(fields["Final-Recipient"]).split(";", 1)[1].strip()
        found[recipient] = (str(fields["Status"]), " ".join(str(fields["Diagnostic-Code"])
                                                            .split()))
    return found


async def lhlo_keywords(server: ServerProcess) -> tuple[str, ...]:
    """The lines of `server`'s LHLO reply (its name, then the extension keywords)."""
    client = await server.client(lhlo=False)
    try:
        return (await client.lhlo("postfix.test")).lines
    finally:
        await client.quit()


def flush_until(system: MailSystem, address: str, status: str, count: int = 1,
                timeout: float = 60) -> list[str]:
    """`postqueue -f` every half second until Postfix has logged `count` LMTP deliveries to
    `address` with `status`; returns those log lines. (Postfix also retries by itself within
    seconds here, but a queue scan that meets the message still in the active queue skips
    it, so the test does not rely on its timer.)"""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return system.wait_sent_to_mda(address, status=status, count=count, timeout=0.5)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            system.postfix.flush()


def wait_queue_empty(system: MailSystem, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while system.postfix.queue():
        assert time.monotonic() < deadline, system.postfix.queue()
        time.sleep(0.05)


@pytest.mark.parametrize("listener", ["inet", "unix"])
def test_postfix_hands_mail_to_mda_over_lmtp(mda, mda_env, mail_system, listener: str
                                             ) -> None:
    """`virtual_transport` to mda's TCP port (the documented lines) and to a UNIX socket in
    Postfix's `private/`, with mda and Postfix using the same host name as on one machine;
    a subaddress passes Postfix's map and mda keeps the full address in Delivered-To; an
    address not in the map is refused by Postfix at RCPT, and accepted once the user is
    added and the map rebuilt and reloaded as documented."""
    add_users(mda, ALICE)
    started = time.monotonic()
    system = mail_system(lmtp_socket=listener == "unix", MDA_HOSTNAME="postfix.test")
    print(f"mda + Postfix up in {time.monotonic() - started:.2f} s")

    refused = system.send(SENDER, [ALICE, f"alice+work@{DOMAIN}"], message("first"))
    assert refused == {}
    system.wait_sent_to_mda(ALICE)
    system.wait_sent_to_mda(f"alice+work@{DOMAIN}")
    copies = stored(mda, ALICE)
    assert [c["subject"] for c in copies] == ["first", "first"]
    shown = b"".join(mda("message", "show", ALICE, "INBOX", str(c["uid"]), check=True).stdout
                     for c in copies)
    assert sorted(re.findall(rb"Delivered-To: (\S+)", shown)) == \
        sorted([ALICE.encode(), f"alice+work@{DOMAIN}".encode()])

    newcomer = f"newcomer@{DOMAIN}"
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refusal:
        system.send(SENDER, [newcomer], message("second"))
    [(code, text)] = refusal.value.recipients.values()
    assert code == 550 and b"5.1.1" in text and b"User unknown" in text, text

    mda("user", "add", newcomer, check=True)  # then the documented map rebuild and reload
    build_address_map(system.postfix.config_dir, mda_env)
    system.postfix.reload()
    assert system.send(SENDER, [newcomer], message("third")) == {}
    system.wait_sent_to_mda(newcomer)


def test_reject_and_over_quota_come_back_as_postfix_bounces(mda, mail_system,
                                                           tmp_path: Path) -> None:
    """One message to four recipients: alice's Sieve rejects it, bob is over quota once it
    is stored, `dave@` differs from the user `Dave@` only in case (Postfix's map matches,
    mda does not), carol takes it. Postfix bounces the three to the sender in its own DSN
    quoting mda's LMTP replies; carol's copy is stored; nothing was stored for the others
    and bob's usage is unchanged."""
    add_users(mda, ALICE, BOB, CAROL, DAVE)
    put_script(mda, tmp_path, ALICE,
               'require "reject";\nreject "Not from you, thanks.";\n')
    mda("user", "set-quota", BOB, "--storage", "200", check=True)
    system = mail_system()

    wrong_case = f"dave@{DOMAIN}"
    assert system.send(SENDER, [ALICE, BOB, CAROL, wrong_case], message("to four")) == {}
    system.wait_sent_to_mda(CAROL)
    for rcpt in (ALICE, BOB, wrong_case):
        system.wait_sent_to_mda(rcpt, status="bounced")
    bounces = system.wait_sink(1)
    wait_queue_empty(system)

    assert [b.sender for b in system.sink.messages] == [""]   # a DSN comes from <>
    [bounce] = bounces
    assert bounce.recipients == (SENDER,)
    assert bounce.message["From"].addresses[0].username == "MAILER-DAEMON"
    failed = dsn_recipients(bounce)
    assert set(failed) == {ALICE, BOB, wrong_case}
    assert failed[ALICE][0] == "5.7.1" and "Not from you, thanks." in failed[ALICE][1]
    assert failed[ALICE][1].startswith("smtp; 550 5.7.1")
    assert failed[BOB][0] == "5.2.2" and failed[BOB][1].startswith("smtp; 552 5.2.2")
    assert failed[wrong_case][0] == "5.1.1" and failed[wrong_case][1].startswith(
        "smtp; 550 5.1.1")

    assert [c["subject"] for c in stored(mda, CAROL)] == ["to four"]
    assert messages_used(mda) == {ALICE: 0, BOB: 0, CAROL: 1, DAVE: 0}
    assert cli_json(mda, "quota", "show", BOB)["storage_used"] == 0


def test_quota_tempfail_keeps_mail_queued_until_quota_is_raised(mda, mail_system) -> None:
    """With MDA_QUOTA_FULL_TEMPFAIL=true mda answers 452 4.2.2: Postfix keeps the message
    deferred through its retries (no bounce), and delivers it once the quota is raised and
    the queue is flushed."""
    add_users(mda, BOB)
    mda("user", "set-quota", BOB, "--storage", "200", check=True)
    system = mail_system(MDA_QUOTA_FULL_TEMPFAIL="true")

    assert system.send(SENDER, [BOB], message("while full")) == {}
    system.wait_sent_to_mda(BOB, status="deferred")
    deferred = flush_until(system, BOB, "deferred", count=2)  # tried again, still full
    assert "452 4.2.2" in deferred[-1]
    [queued] = system.postfix.queue()  # still queued, wherever the last flush moved it
    assert queued["queue_name"] in {"deferred", "incoming", "active"}
    assert queued["sender"] == SENDER
    [rcpt] = queued["recipients"]
    assert rcpt["address"] == BOB and "452 4.2.2" in rcpt["delay_reason"]
    assert stored(mda, BOB) == [] and system.sink.messages == []

    mda("user", "set-quota", BOB, "--storage", "none", check=True)
    flush_until(system, BOB, "sent")
    wait_queue_empty(system)
    assert [c["subject"] for c in stored(mda, BOB)] == ["while full"]
    assert system.sink.messages == []  # no bounce, no delay notice


def test_50mb_message_goes_through_postfix_over_data(mda, mail_system) -> None:
    """A 50 MB message through Postfix (`message_size_limit` as documented) into mda.
    Postfix 3.7's lmtp client sees CHUNKING in mda's LHLO reply and still sends DATA: it has
    no BDAT (mda's BDAT is tested with our own client in tests/lmtp and tests/e2e). A
    message over `message_size_limit` is refused by Postfix at MAIL (SIZE=)."""
    add_users(mda, ALICE)
    system = mail_system(MDA_LOG_LEVEL="DEBUG")
    limit = int(system.postfix.postconf("message_size_limit"))
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    body = line * (50_000_000 // len(line))
    data = message("big", body="") + body
    assert 50_000_000 - len(line) < len(data) < limit

    started = time.monotonic()
    assert system.send(SENDER, [ALICE], data) == {}
    system.wait_sent_to_mda(ALICE)
    elapsed = time.monotonic() - started
    print(f"{len(data)} bytes through Postfix into mda in {elapsed:.1f} s")

    # Postfix logs status=sent on mda's reply after DATA; its QUIT comes a moment later
    system.mda.wait_for_log(r">> b'QUIT", timeout=30)
    commands = re.findall(r">> b'([A-Z]+)", system.mda.log_text())  # aiosmtpd, at DEBUG
    assert commands == ["LHLO", "MAIL", "RCPT", "DATA", "QUIT"], commands
    offered = asyncio.run(lhlo_keywords(system.mda))  # what that LHLO was answered
    assert "CHUNKING" in offered and "SIZE 52428800" in offered, offered
    [copy] = stored(mda, ALICE)
    shown = mda("message", "show", ALICE, "INBOX", str(copy["uid"]), check=True).stdout
    assert shown.endswith(body) and hashlib.sha256(shown[-len(body):]).digest() == \
        hashlib.sha256(body).digest()

    with smtplib.SMTP("127.0.0.1", system.postfix.smtpd_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        code, text = smtp.mail(SENDER, [f"SIZE={limit + 1}"])
    assert code == 552 and text.startswith(b"5.3.4"), (code, text)


def test_vacation_reply_goes_out_through_postfix_once_per_sender(
        mda, mail_system, tmp_path: Path) -> None:
    """alice's vacation replies go back into Postfix over MDA_SUBMISSION_URL and out to the
    sink: one reply per sender per period, none for list mail."""
    add_users(mda, ALICE)
    put_script(mda, tmp_path, ALICE, 'require "vacation";\n'
               'vacation :days 1 :subject "Away" "I am away until Monday.";\n')
    system = mail_system()

    list_sender = "list-member@remote.test"
    mails = [(SENDER, message("one")), (SENDER, message("two")),
             (list_sender, message("digest", sender=list_sender,
                                   extra="List-Id: <news.remote.test>\r\n"))]
    for count, (sender, data) in enumerate(mails, start=1):
        # One at a time: Postfix would otherwise deliver them over parallel LMTP
        # connections, and the per-period record is only checked, not locked.
        assert system.send(sender, [ALICE], data) == {}
        system.wait_sent_to_mda(ALICE, count=count)
    wait_queue_empty(system)  # every reply mda submitted before its 250 has gone out

    [reply] = system.sink.messages
    assert reply.sender == "" and reply.recipients == (SENDER,)
    parsed: EmailMessage = reply.message
    assert parsed["Subject"] == "Away"
    assert parsed["Auto-Submitted"].startswith("auto-replied")
    assert parsed["In-Reply-To"] == f"<{hashlib.sha1(b'one').hexdigest()}@remote.test>"
    assert "I am away until Monday." in parsed.get_body().get_content()
    assert [c["subject"] for c in stored(mda, ALICE)] == ["one", "two", "digest"]


def test_redirect_goes_out_with_the_original_sender_and_never_loops(
        mda, mail_system, tmp_path: Path) -> None:
    """alice redirects to an external address: Postfix relays the copy to the sink with the
    original envelope sender. bob redirects to carol and carol back to bob, both through
    Postfix: the message comes back to bob carrying his X-Sieve-Redirected-From and is kept
    there, once."""
    add_users(mda, ALICE, BOB, CAROL)
    put_script(mda, tmp_path, ALICE, 'redirect "fwd@remote.test";\n')
    put_script(mda, tmp_path, BOB, f'redirect "{CAROL}";\n')
    put_script(mda, tmp_path, CAROL, f'redirect "{BOB}";\n')
    system = mail_system()

    assert system.send(SENDER, [ALICE], message("for alice")) == {}
    [copy] = system.wait_sink(1)
    assert copy.sender == SENDER and copy.recipients == ("fwd@remote.test",)
    assert copy.message["X-Sieve-Redirected-From"] == f"<{ALICE}>"
    assert copy.message["Subject"] == "for alice"

    assert system.send(SENDER, [BOB], message("ping-pong", to=BOB)) == {}
    system.wait_sent_to_mda(BOB, count=2)
    system.wait_sent_to_mda(CAROL)
    wait_queue_empty(system)
    [kept] = stored(mda, BOB)
    assert kept["subject"] == "ping-pong"
    shown = mda("message", "show", BOB, "INBOX", str(kept["uid"]), check=True).stdout
    assert sorted(re.findall(rb"X-Sieve-Redirected-From: <(\S+)>", shown)) == \
        [BOB.encode(), CAROL.encode()]
    assert messages_used(mda) == {ALICE: 0, BOB: 1, CAROL: 0}
    assert len(system.sink.messages) == 1
    handed_in = re.findall(r"qmgr\[.*from=<([^>]*)>", system.postfix.log_text())
    assert handed_in == [SENDER] * 5  # 2 sent in by the test, 3 redirects by mda
