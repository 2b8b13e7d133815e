"""The bytes of redirected messages, vacation replies and notifications (pure functions)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from mda.outbound import notification, redirect_message, vacation_reply
from mda.outbound.compose import parse_sender_policy, redirect_sender
from mda.sieve import Notify, Vacation, parse_message
from mda.sieve.extensions.enotify import parse_mailto

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ORIGINAL = (b"Return-Path: <old@example.org>\r\nFrom: ann@example.org\r\n"
            b"To: joe@example.com\r\nSubject: Hi\r\nMessage-ID: <m1@example.org>\r\n"
            b"\r\nbody\r\n")


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore


def reply(original: bytes = ORIGINAL, **fields: object) -> bytes:
    action = Vacation(**{"reason": "away", "seconds": 86400, "sender": "ann@example.org",
                         **fields})  # type: ignore[arg-type]
    message = vacation_reply(action, parse_message(original), user_address="joe@example.com",
                             hostname="mx.test", now=NOW)
    assert (message.kind, message.sender, message.recipients) == (
        "vacation", "", (action.sender,))
    return message.data


def test_redirect_adds_the_loop_header_and_drops_return_path() -> None:
    data = redirect_message(ORIGINAL, user_address="joe@example.com")
    assert data == (b"X-Sieve-Redirected-From: <joe@example.com>\r\n"
                    + ORIGINAL[len(b"Return-Path: <old@example.org>\r\n"):])


def test_redirect_of_a_message_without_return_path_is_only_prefixed() -> None:
    body_only = b"no header here\r\n"
    assert redirect_message(body_only, user_address="j@x") == \
        b"X-Sieve-Redirected-From: <j@x>\r\n" + body_only


def test_a_decoded_subject_cannot_inject_header_fields() -> None:
    hostile = ORIGINAL.replace(b"Subject: Hi", b"Subject: =?utf-8?q?Hi=0D=0ABcc=3A_x=40evil?=")
    data = reply(hostile)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head
    assert parsed(data)["Subject"] == "Auto: Hi Bcc: x@evil"


def test_without_subject_or_message_id() -> None:
    bare = b"From: ann@example.org\r\nTo: joe@example.com\r\n\r\nbody\r\n"
    message = parsed(reply(bare))
    assert message["Subject"] == "Automated reply"
    assert message["In-Reply-To"] is None and message["References"] is None


def test_long_lines_are_quoted_printable_and_line_endings_crlf() -> None:
    data = reply(reason="x" * 2000 + "\nsecond line")
    assert b"Content-Transfer-Encoding: quoted-printable" in data
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert parsed(data).get_content() == "x" * 2000 + "\r\nsecond line\r\n"


def test_mime_reason_keeps_only_content_fields() -> None:
    entity = "Content-Type: text/plain; charset=utf-8\nX-Other: dropped\n\nGrüße\n"
    data = reply(reason=entity, mime=True)
    message = parsed(data)
    assert message["X-Other"] is None
    assert message.get_content() == "Grüße\r\n"


def test_an_invalid_from_falls_back_to_the_user() -> None:
    assert parsed(reply(from_="not an address"))["From"] == "joe@example.com"


def test_notification_with_only_cc_has_no_to_field() -> None:
    mailto = parse_mailto("mailto:?cc=desk@example.net&subject=Ping&from=evil@x")
    assert mailto is not None
    note = notification(Notify("mailto:?cc=desk@example.net", ("desk@example.net",)), mailto,
                        parse_message(ORIGINAL), user_address="joe@example.com",
                        hostname="mx.test", now=NOW)
    message = parsed(note.data)
    assert (note.sender, note.recipients) == ("", ("desk@example.net",))
    assert (message["To"], message["Cc"], message["From"], message["Subject"]) == (
        None, "desk@example.net", "joe@example.com", "Ping")


@pytest.mark.parametrize(("policy", "expected"), [
    ("sender", "ann@example.org"), ("RECIPIENT", "joe@example.com"),
    ("orig_recipient", "joe+x@example.com"), (" <> ", ""), ("<fwd@example.com>", "fwd@example.com"),
])
def test_redirect_sender_policies(policy: str, expected: str) -> None:
    assert redirect_sender(parse_sender_policy(policy), mail_from="ann@example.org",
                           user_address="joe@example.com", rcpt="joe+x@example.com") == expected


@pytest.mark.parametrize("policy", ["", "owner", "fwd@example.com", "<Name <a@b>>", "<a b@c>"])
def test_bad_redirect_sender_policies(policy: str) -> None:
    with pytest.raises(ValueError, match="is not a redirect envelope sender"):
        parse_sender_policy(policy)
