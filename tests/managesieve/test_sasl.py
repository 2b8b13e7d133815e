"""SASL PLAIN (RFC 4616) and LOGIN, server side, and the failed-login counter: no I/O."""

from __future__ import annotations

import base64

import pytest

from mda.managesieve import sasl
from mda.managesieve.throttle import LoginThrottle


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_plain_with_initial_response() -> None:
    _, step = sasl.start("plain", b64(b"\0joe@example.org\0s3cret"))
    assert step == sasl.Credentials("joe@example.org", "s3cret", "")


def test_plain_without_initial_response_sends_an_empty_challenge() -> None:
    exchange, step = sasl.start("PLAIN", None)
    assert step == sasl.Challenge(b"")
    assert step.encoded() == ""
    assert exchange.respond(b64(b"joe\0joe\0pw")) == sasl.Credentials("joe", "pw", "joe")


def test_plain_utf8_password() -> None:
    _, step = sasl.start("PLAIN", b64("\0jörg@example.org\0pässwörd".encode()))
    assert step == sasl.Credentials("jörg@example.org", "pässwörd")


@pytest.mark.parametrize(("message", "reason"), [
    (b"\0joe\0pw\0extra", "PLAIN message must be authzid NUL authcid NUL password"),
    (b"joe\0pw", "PLAIN message must be authzid NUL authcid NUL password"),
    (b"\0\0pw", "PLAIN: empty authentication identity"),
    (b"\0joe\0", "PLAIN: empty password"),
    (b"admin\0joe\0pw", "PLAIN: authorization identity must be empty or the same"),
    (b"\0jo\xffe\0pw", "authentication identity is not UTF-8"),
])
def test_plain_refusals(message: bytes, reason: str) -> None:
    with pytest.raises(sasl.SaslError, match=reason):
        sasl.start("PLAIN", b64(message))


def test_plain_authzid_is_compared_by_the_callers_rule() -> None:
    def same(authzid: str, authcid: str) -> bool:
        return authzid.lower() == authcid.lower()

    message = b64(b"Joe@Example.ORG\0joe@example.org\0pw")
    with pytest.raises(sasl.SaslError, match="authorization identity must be empty"):
        sasl.start("PLAIN", message)
    assert sasl.start("PLAIN", message, same_identity=same)[1] == \
        sasl.Credentials("joe@example.org", "pw", "Joe@Example.ORG")
    exchange, _ = sasl.start("PLAIN", None, same_identity=same)
    with pytest.raises(sasl.SaslError, match="authorization identity must be empty"):
        exchange.respond(b64(b"ann@example.org\0joe@example.org\0pw"))


@pytest.mark.parametrize("text", ["!!!!", "AGpvZQ", "AGpv ZQ==", "ümlaut"])
def test_bad_base64_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(sasl.SaslError, match="not valid base64"):
        sasl.start("PLAIN", text)


def test_star_aborts() -> None:
    exchange, _ = sasl.start("LOGIN", None)
    with pytest.raises(sasl.SaslAborted, match="cancelled"):
        exchange.respond("*")


def test_login_challenges_in_order() -> None:
    exchange, step = sasl.start("LOGIN", None)
    assert step == sasl.Challenge(b"Username:")
    assert step.encoded() == "VXNlcm5hbWU6"
    step = exchange.respond(b64(b"joe@example.org"))
    assert step == sasl.Challenge(b"Password:")
    assert exchange.respond(b64(b"pw")) == sasl.Credentials("joe@example.org", "pw")


def test_login_initial_response_is_the_user_name() -> None:
    exchange, step = sasl.start("LOGIN", b64(b"joe@example.org"))
    assert step == sasl.Challenge(b"Password:")
    assert exchange.respond(b64(b"pw")) == sasl.Credentials("joe@example.org", "pw")


def test_login_empty_password_refused() -> None:
    exchange, _ = sasl.start("LOGIN", b64(b"joe"))
    with pytest.raises(sasl.SaslError, match="empty password"):
        exchange.respond("")


def test_unknown_mechanism() -> None:
    with pytest.raises(sasl.UnknownMechanism, match="CRAM-MD5.*offered: PLAIN LOGIN"):
        sasl.start("CRAM-MD5", None)


def test_password_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(sasl.Credentials("joe", "s3cret"))


# ---------------------------------------------------------------------- throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_after_max_failures_within_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(3, 60, clock=clock)
    for _ in range(2):
        throttle.failed("192.0.2.1")
    assert not throttle.blocked("192.0.2.1")
    throttle.failed("192.0.2.1")
    assert throttle.blocked("192.0.2.1")
    assert not throttle.blocked("192.0.2.2")
    clock.now += 60.5
    assert throttle.failures("192.0.2.1") == 0
    assert not throttle.blocked("192.0.2.1")


def test_throttle_window_slides() -> None:
    clock = Clock()
    throttle = LoginThrottle(2, 10, clock=clock)
    throttle.failed("p")
    clock.now += 6
    throttle.failed("p")
    assert throttle.blocked("p")
    clock.now += 5  # the first failure is 11 s old
    assert throttle.failures("p") == 1
    assert not throttle.blocked("p")


def test_throttle_forgets_the_oldest_peer_beyond_its_capacity() -> None:
    throttle = LoginThrottle(1, 60, clock=Clock(), max_peers=2)
    for peer in ("a", "b", "c"):
        throttle.failed(peer)
    assert [throttle.blocked(p) for p in ("a", "b", "c")] == [False, True, True]


def test_throttle_counts_attempts_in_flight() -> None:
    clock = Clock()
    throttle = LoginThrottle(3, 60, clock=clock)
    assert [throttle.begin("p") for _ in range(4)] == [True, True, True, False]
    assert throttle.in_flight("p") == 3 and throttle.failures("p") == 0
    throttle.succeeded("p")
    throttle.cancelled("p")
    assert throttle.in_flight("p") == 1 and not throttle.blocked("p")
    assert throttle.begin("p") and throttle.begin("p")
    assert not throttle.begin("p")
    for _ in range(3):
        throttle.failed("p")
    assert (throttle.in_flight("p"), throttle.failures("p")) == (0, 3)
    assert not throttle.begin("p")
    clock.now += 61
    assert throttle.begin("p")
