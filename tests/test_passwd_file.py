"""mda.passwd_file: Dovecot passwd-file lines and quota rules, sans IO."""

from __future__ import annotations

import pytest

from mda.passwd_file import PasswdFileError, parse_passwd_file, parse_quota_rule
from mda.store import UNCHANGED

SHA512 = ("{SHA512-CRYPT}$6$p1nFGtvFywL3lYNM$1eyw1jZYsvNI7DckMttgGkGWyPFEmzxTLNYztv/WA1pKD."
          "BXcJybiqvzn0yw8/9fUrY9R9K93Lrr1KmckB5fi1")


@pytest.mark.parametrize(("rule", "limits"), [
    ("*:storage=1G", {"storage_limit": 1024**3}),
    ("*:storage=1024", {"storage_limit": 1024 * 1024}),  # KiB without a unit, as in Dovecot
    ("*:storage=512M", {"storage_limit": 512 * 1024**2}),
    ("*:storage=2gb", {"storage_limit": 2 * 1024**3}),
    ("*:storage=100KiB", {"storage_limit": 100 * 1024}),
    ("*:bytes=1000", {"storage_limit": 1000}),
    ("*:bytes=10k", {"storage_limit": 10240}),
    ("*:bytes=7B", {"storage_limit": 7}),
    ("*:messages=50", {"messages_limit": 50}),
    ("*:storage=1T:messages=1000", {"storage_limit": 1024**4, "messages_limit": 1000}),
    ("?:bytes=5", {"storage_limit": 5}),
    ("*:storage=0", {"storage_limit": None}),  # 0 is unlimited in Dovecot
    ("*:ignore", {"storage_limit": None, "messages_limit": None}),
])
def test_quota_rules(rule: str, limits: dict[str, int | None]) -> None:
    assert parse_quota_rule(rule) == limits


@pytest.mark.parametrize(("rule", "reason"), [
    ("*:storage=+100M", "relative limit"),
    ("*:storage=-1", "relative limit"),
    ("*:storage=10%", "relative limit"),
    ("*:storage=", "bad limit"),
    ("*:storage=1X", "bad limit"),
    ("*:storage=ten", "bad limit"),
    ("*:files=10", "unknown quota limit 'files'"),
    ("*:backend=1G", "backend quota rules"),
    ("*:bytes=9223372036854775808", "larger than"),
    ("*:storage=9007199254740992", "larger than"),
    ("storage=1G", "expected *:storage=N"),
])
def test_bad_quota_rules(rule: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_quota_rule(rule)
    assert reason in str(info.value)


def test_realistic_file() -> None:
    data = (
        b"# mail users, converted from the old server\r\n"
        b"\r\n"
        + f"alice@Example.ORG:{SHA512}:5000:5000::/srv/mail/alice::".encode()
        + b"userdb_quota_rule=*:storage=1G userdb_mail=maildir:~/Maildir\r\n"
        b"   \n"
        b"bob@example.org:{PLAIN}bob's pass word:5000:5000\n"
        b"carol@example.org:::::::quota_rule=*:messages=10 quota_rule2=Trash:storage=+10M "
        b"nopassword\n"
        b"dave@example.org:{clear}d\n"
        b"#erin@example.org:{MD5}commented out\n"
    )
    parsed = parse_passwd_file(data)
    assert [(e.line, e.address, e.scheme) for e in parsed.entries] == [
        (3, "alice@example.org", "SHA512-CRYPT"), (5, "bob@example.org", "PLAIN"),
        (6, "carol@example.org", None), (7, "dave@example.org", "PLAIN")]
    alice, bob, carol, dave = parsed.entries
    assert alice.password == SHA512
    assert (alice.storage_limit, alice.messages_limit) == (1024**3, UNCHANGED)
    assert bob.password == "{PLAIN}bob's pass word"
    assert (bob.storage_limit, bob.messages_limit) == (UNCHANGED, UNCHANGED)
    assert carol.password is None and carol.messages_limit == 10
    assert dave.password == "{clear}d"
    assert parsed.ignored_fields == ["userdb_mail", "quota_rule2", "nopassword"]


def test_quota_rule_for_one_mailbox_is_ignored_not_applied() -> None:
    parsed = parse_passwd_file(b"a@example.org:{PLAIN}x::::::quota_rule=INBOX:storage=1M "
                               b"userdb_quota_rule=Trash:storage=+1M\n")
    assert parsed.entries[0].storage_limit is UNCHANGED
    assert parsed.ignored_fields == ["quota_rule (mailbox INBOX)",
                                     "userdb_quota_rule (mailbox Trash)"]


def test_domain_for_bare_user_names() -> None:
    data = b"alice:{PLAIN}a\nbob@other.example:{PLAIN}b\n"
    parsed = parse_passwd_file(data, domain="Example.ORG")
    assert [e.address for e in parsed.entries] == ["alice@example.org", "bob@other.example"]
    with pytest.raises(PasswdFileError, match=r"line 1: bad address: .*--domain"):
        parse_passwd_file(data)


@pytest.mark.parametrize(("data", "line", "reason"), [
    (b"ok@example.org:{PLAIN}x\nbad@example.org:{MD5}abc\n", 2,
     "bad@example.org: unknown password scheme {MD5}"),
    (b"ok@example.org:{PLAIN}x\n\n# c\nno at sign:{PLAIN}x\n", 4, "bad address"),
    (b"a@example.org:{SHA512-CRYPT}$6$x$y\n", 1, "malformed SHA512-CRYPT hash"),
    (b"a@example.org:$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0\n", 1, "MD5-CRYPT"),
    (b"a@example.org\n", 1, "no password field"),
    (b":{PLAIN}x\n", 1, "empty user name"),
    (b"a@example.org:{PLAIN}x\nA@EXAMPLE.org:{PLAIN}y\nA@example.ORG:{PLAIN}z\n", 3,
     "A@example.org is already on line 2"),
    (b"a@example.org:{PLAIN}x::::::quota_rule=*:storage=+1G\n", 1,
     "a@example.org: quota_rule=*:storage=+1G: relative limit"),
    (b"a@example.org:{PLAIN}x\nb@example.org:{PLAIN}\xff\n", 2, "not valid UTF-8 (byte 22)"),
])
def test_first_bad_line_is_named(data: bytes, line: int, reason: str) -> None:
    with pytest.raises(PasswdFileError) as info:
        parse_passwd_file(data)
    assert info.value.line == line
    assert str(info.value) == f"line {line}: {info.value.reason}"
    assert reason in info.value.reason, info.value.reason


def test_empty_file_has_no_entries() -> None:
    assert parse_passwd_file(b"").entries == []
    assert parse_passwd_file(b"# only a comment\n\n").entries == []


def test_a_byte_order_mark_is_not_part_of_the_first_address() -> None:
    parsed = parse_passwd_file(b"\xef\xbb\xbfbom@example.org:{PLAIN}p\n")
    assert [e.address for e in parsed.entries] == ["bom@example.org"]
