"""The ManageSieve session state machine without sockets, on a real SQLite store.

What a loopback test client cannot show: a remote peer's view (SASL hidden, ENCRYPT-NEEDED,
AUTH-TOO-WEAK), peer classification, the internal-error path, and the upgrade of an old
password hash after a good login.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mda.config import Settings
from mda.managesieve import Peer, ServerContext, Session, State, TLSSetupError
from mda.managesieve.server import load_tls_context
from mda.managesieve.wire import NEED_DATA, BadCommand, Command, CommandParser
from mda.passwords import verify_password
from mda.store import Store, add_user, delete_user, find_user, set_password_hash
from mda.store.migrate import upgrade_async
from tests.managesieve.conftest import plain
from tests.managesieve.tls import TestPKI, test_pki  # noqa: F401 (fixture)

REMOTE = Peer("192.0.2.7", "192.0.2.7:40000", loopback=False)
LOCAL = Peer("127.0.0.1", "127.0.0.1:40000", loopback=True)
USER, PASSWORD = "joe@example.org", "pa55 wörd"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    await upgrade_async(database_url)
    async with Store(database_url) as s:
        async with s.transaction() as session:
            await add_user(session, USER)
            await set_password_hash(session, USER, "{PLAIN}" + PASSWORD)
        yield s


def settings(database_url: str, **values: object) -> Settings:
    return Settings(database_url=database_url, managesieve_auth_failure_delay=0, **values)


async def run(session: Session, data: bytes) -> bytes:
    """Feed the bytes through a parser and the session; everything the session answered."""
    parser = CommandParser(max_literal=session.context.max_literal)
    parser.receive_data(data)
    out = b""
    while (event := parser.next_event()) is not NEED_DATA:
        out += (await session.handle(event)).data
    return out


def _command(data: bytes) -> Command | BadCommand:
    parser = CommandParser(max_literal=100)
    parser.receive_data(data)
    event = parser.next_event()
    assert event is not NEED_DATA
    return event


def auth(user: str = USER, password: str = PASSWORD) -> bytes:
    return f'AUTHENTICATE "PLAIN" "{plain(user, password)}"\r\n'.encode()


async def test_remote_peer_without_tls_certificate(store: Store, database_url: str) -> None:
    session = Session(ServerContext(store, settings(database_url)), REMOTE)
    greeting = session.greeting()
    assert b'"SASL" ""\r\n' in greeting
    assert b'"STARTTLS"' not in greeting
    assert await run(session, auth()) == (
        b'NO (AUTH-TOO-WEAK) "plain-text authentication is not allowed on an unencrypted '
        b'connection"\r\n')
    assert session.state is State.NONAUTH


async def test_remote_peer_must_use_starttls(store: Store, database_url: str,
                                             test_pki: TestPKI) -> None:  # noqa: F811
    tls = load_tls_context(test_pki.cert_file, test_pki.key_file)
    session = Session(ServerContext(store, settings(database_url), tls_context=tls), REMOTE)
    greeting = session.greeting()
    assert b'"SASL" ""\r\n' in greeting and b'"STARTTLS"\r\n' in greeting
    assert await run(session, auth()) == (
        b'NO (ENCRYPT-NEEDED) "plain-text authentication needs TLS: use STARTTLS first"\r\n')
    reply = await session.handle(_command(b"STARTTLS\r\n"))
    assert reply.starttls and reply.data == b'OK "Begin TLS negotiation now"\r\n'
    after = session.tls_started()
    assert b'"SASL" "PLAIN LOGIN"\r\n' in after and b'"STARTTLS"' not in after
    assert await run(session, auth()) == b'OK "Logged in"\r\n'


async def test_allow_plaintext_auth_setting(store: Store, database_url: str) -> None:
    session = Session(ServerContext(store, settings(database_url, allow_plaintext_auth=True)),
                      REMOTE)
    assert b'"SASL" "PLAIN LOGIN"\r\n' in session.greeting()
    assert await run(session, auth()) == b'OK "Logged in"\r\n'
    assert session.state is State.AUTH and session.address == USER


async def test_implicit_tls_session_offers_login(store: Store, database_url: str) -> None:
    session = Session(ServerContext(store, settings(database_url)), REMOTE, tls=True)
    assert b'"SASL" "PLAIN LOGIN"\r\n' in session.greeting()
    assert await run(session, auth()) == b'OK "Logged in"\r\n'


@pytest.mark.parametrize(("peername", "loopback", "address"), [
    (("127.0.0.1", 5000), True, "127.0.0.1"),
    (("127.8.9.10", 5000), True, "127.8.9.10"),
    (("::1", 5000, 0, 0), True, "::1"),
    (("::ffff:127.0.0.1", 5000, 0, 0), True, "::ffff:127.0.0.1"),
    (("192.0.2.7", 5000), False, "192.0.2.7"),
    (("2001:db8::1", 5000, 0, 0), False, "2001:db8::1"),
    (("::ffff:192.0.2.7", 5000, 0, 0), False, "::ffff:192.0.2.7"),
    ("", True, "local"),
    (None, True, "local"),
])
def test_peer_classification(peername: object, loopback: bool, address: str) -> None:
    peer = Peer.from_sockname(peername)
    assert (peer.loopback, peer.address) == (loopback, address)


@pytest.mark.parametrize(("peer", "other_user_blocked"), [(REMOTE, True), (LOCAL, False)],
                         ids=["remote-by-address", "loopback-by-address-and-login"])
async def test_throttle_key(store: Store, database_url: str, peer: Peer,
                            other_user_blocked: bool) -> None:
    """Failed logins count against the peer address, and for a loopback peer (a webmail
    on this machine, whose users all share 127.0.0.1) against the address and login."""
    async with store.transaction() as db:
        await add_user(db, "ann@example.org")
        await set_password_hash(db, "ann@example.org", "{PLAIN}ann's")
    context = ServerContext(store, settings(database_url, allow_plaintext_auth=True,
                                            managesieve_auth_max_failures=2))
    wrong = auth(password="wrong")
    assert await run(Session(context, peer), wrong + wrong) == \
        b'NO "authentication failed"\r\n' * 2
    trylater = b'NO (TRYLATER) "too many failed logins; try again later"\r\n'
    assert await run(Session(context, peer), auth(USER.replace("example", "EXAMPLE"))) \
        == trylater
    other = await run(Session(context, peer), auth("ann@example.org", "ann's"))
    assert other == (trylater if other_user_blocked else b'OK "Logged in"\r\n')
    stranger = Peer("192.0.2.8", "192.0.2.8:40000", loopback=False)
    assert await run(Session(context, stranger), auth()) == b'OK "Logged in"\r\n'


@pytest.mark.parametrize(("authzid", "reply"), [
    ("joe@EXAMPLE.org", b'OK "Logged in"\r\n'),
    ("<joe@example.org>", b'OK "Logged in"\r\n'),
    ("Joe@example.org", b'NO "PLAIN: authorization identity must be empty or the same as '
                        b'the authentication identity"\r\n'),
    ("ann@example.org", b'NO "PLAIN: authorization identity must be empty or the same as '
                        b'the authentication identity"\r\n'),
])
async def test_authzid_is_compared_as_an_address(store: Store, database_url: str,
                                                 authzid: str, reply: bytes) -> None:
    """The domain of the SASL PLAIN authorization identity is case-insensitive, as the
    store compares addresses; the local part is not."""
    session = Session(ServerContext(store, settings(database_url)), LOCAL)
    request = f'AUTHENTICATE "PLAIN" "{plain(USER, PASSWORD, authzid)}"\r\n'.encode()
    assert await run(session, request) == reply


async def test_unexpected_error_is_no_and_the_session_goes_on(
        store: Store, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async def broken_sleep(seconds: float) -> None:
        raise RuntimeError("clock on fire")

    context = ServerContext(store, settings(database_url), sleep=broken_sleep)
    session = Session(context, LOCAL)
    with caplog.at_level(logging.ERROR, logger="mda.managesieve"):
        assert await run(session, auth(password="wrong")) == b'NO "internal error"\r\n'
    assert "internal error in AUTHENTICATE" in caplog.text
    assert "clock on fire" in caplog.text  # the traceback is logged, not sent
    assert await run(session, b"NOOP\r\n" + auth()) == b'OK "Done"\r\nOK "Logged in"\r\n'


async def test_old_hash_is_upgraded_after_a_good_login(store: Store, database_url: str) -> None:
    session = Session(ServerContext(store, settings(database_url)), LOCAL)
    assert await run(session, auth()) == b'OK "Logged in"\r\n'
    async with store.read() as db:
        stored = (await find_user(db, USER)).password_hash
    assert stored.startswith("{ARGON2ID}$argon2id$")
    assert verify_password(stored, PASSWORD)


async def test_unusable_stored_hash_fails_the_login(store: Store, database_url: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    async with store.transaction() as db:
        await set_password_hash(db, USER, "{MD5}abcdef")
    session = Session(ServerContext(store, settings(database_url)), LOCAL)
    with caplog.at_level(logging.ERROR, logger="mda.managesieve"):
        assert await run(session, auth()) == b'NO "authentication failed"\r\n'
    assert "the stored password of joe@example.org cannot be used" in caplog.text
    assert PASSWORD not in caplog.text


async def test_user_without_password_cannot_log_in(store: Store, database_url: str) -> None:
    async with store.transaction() as db:
        await set_password_hash(db, USER, None)
    session = Session(ServerContext(store, settings(database_url)), LOCAL)
    assert await run(session, auth()) == b'NO "authentication failed"\r\n'


async def test_deleted_user_mid_session(store: Store, database_url: str) -> None:
    session = Session(ServerContext(store, settings(database_url)), LOCAL)
    assert await run(session, auth()) == b'OK "Logged in"\r\n'
    async with store.transaction() as db:
        await delete_user(db, USER)
    assert await run(session, b'PUTSCRIPT "a" "keep;"\r\n') == \
        b'NO "this account no longer exists"\r\n'
    assert await run(session, b"LISTSCRIPTS\r\n") == b"OK\r\n"


def test_tls_context_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TLSSetupError, match=f"cannot load TLS certificate {missing}"):
        load_tls_context(missing, missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    with pytest.raises(TLSSetupError, match=f"{junk} holds no PEM certificate$"):
        load_tls_context(junk, junk)


def test_tls_context_refuses_a_foreign_key(tmp_path: Path,
                                           test_pki: TestPKI) -> None:  # noqa: F811
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = tmp_path / "other.key"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(TLSSetupError, match="the private key does not belong to the "
                                            "certificate$"):
        load_tls_context(test_pki.cert_file, other)
    with pytest.raises(TLSSetupError, match=f"{test_pki.ca_file} holds no PEM private key$"):
        load_tls_context(test_pki.cert_file, test_pki.ca_file)


def test_tls_context_is_tls12_or_newer(test_pki: TestPKI) -> None:  # noqa: F811
    context = load_tls_context(test_pki.cert_file, test_pki.key_file)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
