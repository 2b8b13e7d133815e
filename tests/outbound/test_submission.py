"""Submitter against a real SMTP server (the capture sink): options, refusals, TLS, AUTH."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from mda.outbound import OutgoingMessage, SubmissionError, SubmissionTarget, Submitter
from tests.managesieve.tls import make_test_pki
from tests.outbound.sink import CaptureSink, Tarpit, closed_port

MESSAGE = b"From: joe@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


def submitter(url: str) -> Submitter:
    return Submitter(SubmissionTarget.parse(url), timeout=5, hostname="mx.test")


async def send(url: str, *messages: OutgoingMessage) -> None:
    async with submitter(url).connect() as connection:
        for message in messages:
            await connection.send(message)


def outgoing(*recipients: str, sender: str = "joe@example.com",
             data: bytes = MESSAGE) -> OutgoingMessage:
    return OutgoingMessage("redirect", sender, recipients, data)


async def test_several_messages_on_one_session(sink: CaptureSink) -> None:
    await send(sink.url, outgoing("a@example.net"), outgoing("b@example.net", sender=""))
    assert [(m.sender, m.recipients, m.data) for m in sink.messages] == [
        ("joe@example.com", ("a@example.net",), MESSAGE),
        ("", ("b@example.net",), MESSAGE)]


async def test_8bit_data_is_announced_and_utf8_addresses_use_smtputf8(
        sink: CaptureSink) -> None:
    data = "Subject: Grüße\r\n\r\nschön\r\n".encode()
    await send(sink.url, outgoing("a@example.net", data=data), outgoing("jörg@example.net"))
    first, second = sink.messages
    assert first.data == data and "BODY=8BITMIME" in first.mail_options
    assert "SMTPUTF8" not in first.mail_options
    assert second.recipients == ("jörg@example.net",) and "SMTPUTF8" in second.mail_options
    assert "BODY=8BITMIME" not in second.mail_options


async def test_a_refused_recipient_is_an_error_naming_the_reply(sink: CaptureSink) -> None:
    sink.refuse("no@example.net")
    with pytest.raises(SubmissionError, match=r"<no@example.net> \(550 5\.1\.1"):
        await send(sink.url, outgoing("no@example.net"))
    with pytest.raises(SubmissionError, match=r"refused <no@example.net> \(550"):
        await send(sink.url, outgoing("yes@example.net", "no@example.net"))


async def test_refused_data_is_an_error(sink: CaptureSink) -> None:
    sink.fail_data("554 5.6.0 content refused")
    with pytest.raises(SubmissionError, match="answered 554 5.6.0 content refused"):
        await send(sink.url, outgoing("a@example.net"))
    assert sink.messages == []


async def test_an_unreachable_mta_is_an_error_at_connect() -> None:
    port = closed_port()
    with pytest.raises(SubmissionError, match=f"cannot reach smtp://127.0.0.1:{port}"):
        await send(f"smtp://127.0.0.1:{port}", outgoing("a@example.net"))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_with_the_credentials_of_the_url() -> None:
    with CaptureSink(credentials=("mda", "s3cret/+")) as sink:
        await send(f"smtp://mda:s3cret%2F%2B@127.0.0.1:{sink.port}", outgoing("a@example.net"))
        assert len(sink.messages) == 1
        with pytest.raises(SubmissionError) as refused:
            await send(f"smtp://mda:wrong@127.0.0.1:{sink.port}", outgoing("a@example.net"))
        assert "wrong" not in str(refused.value)
        assert len(sink.messages) == 1


def _server_context(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    pki = make_test_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    return context, pki.ca_file


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
async def test_tls_is_verified_against_the_trust_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, implicit: bool) -> None:
    context, ca_file = _server_context(tmp_path)
    with CaptureSink(tls_context=context, implicit_tls=implicit) as sink:
        with pytest.raises(SubmissionError, match="cannot reach"):  # the CA is not trusted
            await send(sink.url, outgoing("a@example.net"))
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        await send(sink.url, outgoing("a@example.net"))
        assert len(sink.messages) == 1


async def test_plain_smtp_never_starts_tls_on_its_own(tmp_path: Path) -> None:
    context, _ = _server_context(tmp_path)
    with CaptureSink(tls_context=context) as sink:  # the sink insists on STARTTLS first
        with pytest.raises(SubmissionError, match="530"):
            await send(f"smtp://127.0.0.1:{sink.port}", outgoing("a@example.net"))


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://127.0.0.1", SubmissionTarget("smtp", "127.0.0.1", 25)),
    ("SMTP://mx.example.org:2525/", SubmissionTarget("smtp", "mx.example.org", 2525)),
    ("smtp+starttls://mx", SubmissionTarget("smtp+starttls", "mx", 587)),
    ("smtps://[::1]", SubmissionTarget("smtps", "::1", 465)),
    ("smtp://u%40x:p%3Aw@h:26", SubmissionTarget("smtp", "h", 26, "u@x", "p:w")),
])
def test_submission_url_forms(url: str, expected: SubmissionTarget) -> None:
    target = SubmissionTarget.parse(url)
    assert target == expected and target.password == expected.password
    assert "p:w" not in str(target) and "p%3Aw" not in str(target)


@pytest.mark.parametrize(("url", "problem"), [
    ("127.0.0.1:25", "unknown scheme"),
    ("lmtp://h", "unknown scheme lmtp:"),
    ("smtp://", "names no host"),
    ("smtp://h:99999", "not a submission URL"),
    ("smtp://h/path", "no path"),
    ("smtp://h?x=1", "no path, query"),
    ("smtp://user@h", "both user and password"),
])
def test_bad_submission_urls_say_why(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SubmissionTarget.parse(url)


@pytest.mark.parametrize(("refusal", "permanent"), [
    ("550 5.1.1 no such user", True), ("450 4.2.0 greylisted", False)])
async def test_a_refused_recipient_is_permanent_only_for_5xx(
        sink: CaptureSink, refusal: str, permanent: bool) -> None:
    sink.refuse("no@example.net", reply=refusal)
    with pytest.raises(SubmissionError) as every:
        await send(sink.url, outgoing("no@example.net"))
    assert (every.value.permanent, every.value.accepted) == (permanent, ())
    with pytest.raises(SubmissionError) as some:
        await send(sink.url, outgoing("yes@example.net", "no@example.net"))
    assert (some.value.permanent, some.value.accepted) == (
        permanent, ("yes@example.net",) if permanent else ())
    assert [m.recipients for m in sink.messages] == [("yes@example.net",)]


@pytest.mark.parametrize(("reply", "permanent"), [
    ("554 5.6.0 content refused", True), ("451 4.3.0 try later", False)])
async def test_refused_data_is_permanent_only_for_5xx(sink: CaptureSink, reply: str,
                                                      permanent: bool) -> None:
    sink.fail_data(reply)
    with pytest.raises(SubmissionError) as refused:
        await send(sink.url, outgoing("a@example.net"))
    assert refused.value.permanent is permanent


async def test_a_deadline_cuts_a_stalled_mta_short() -> None:
    """A step timeout of 30 s, a deadline 0.5 s away: the greeting wait ends at the deadline."""
    async with Tarpit() as tarpit:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(SubmissionError, match="MDA_SUBMISSION_BUDGET") as stalled:
            await Submitter(SubmissionTarget.parse(tarpit.url), timeout=30,
                            hostname="mx.test").open(deadline=started + 0.5)
        assert 0.5 <= loop.time() - started < 1.5
        assert not stalled.value.permanent and tarpit.connections == 1
