"""`mda db|user|quota|mailbox|message` through the real `mda` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from mda.store.migrate import head_revision
from tests.cli.conftest import Run, as_json, assert_one_line_error, store_messages

MESSAGE = (b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\nSubject: Hello there\r\n"
           b"\r\nBody line\r\n")


@pytest.mark.sqlite_only
def test_db_upgrade_creates_the_file_and_is_repeatable(mda: Run, sqlite_url: str) -> None:
    path = Path(sqlite_url.split("///", 1)[1])
    assert not path.exists()
    first = mda("db", "upgrade", check=True)
    assert f"revision {head_revision()}".encode() in first.stdout
    assert path.is_file()
    mda("db", "upgrade", check=True)


def test_commands_before_upgrade_say_what_to_do(mda: Run) -> None:
    assert_one_line_error(mda("user", "list"), "mda db upgrade")


def test_user_lifecycle(cli: Run) -> None:
    assert cli("user", "add", "Joe@Example.COM", "--quota-storage", "10K",
               "--quota-messages", "5").stdout == b"added Joe@example.com\n"
    cli("user", "add", "ann@example.com", check=True)
    assert as_json(cli("user", "list", "--json")) == [
        {"address": "Joe@example.com", "password_set": False, "storage_used": 0,
         "storage_limit": 10240, "messages_used": 0, "messages_limit": 5},
        {"address": "ann@example.com", "password_set": False, "storage_used": 0,
         "storage_limit": None, "messages_used": 0, "messages_limit": None},
    ]
    assert b"Joe@example.com" in cli("user", "list", check=True).stdout
    cli("user", "set-quota", "Joe@EXAMPLE.com", "--storage", "none", "--messages", "7",
        check=True)
    assert as_json(cli("quota", "show", "Joe@example.com", "--json")) == {
        "storage_used": 0, "storage_limit": None, "messages_used": 0, "messages_limit": 7}
    cli("user", "set-quota", "Joe@example.com", "--storage", "1M", check=True)
    assert as_json(cli("quota", "show", "Joe@example.com", "--json"))["storage_limit"] == 1024**2
    assert as_json(cli("quota", "show", "Joe@example.com", "--json"))["messages_limit"] == 7
    cli("user", "delete", "Joe@example.com", check=True)
    assert [u["address"] for u in as_json(cli("user", "list", "--json"))] == ["ann@example.com"]


def test_sizes_in_bytes_and_with_suffixes(cli: Run) -> None:
    for n, (size, expected) in enumerate([("500K", 512000), ("10M", 10485760),
                                          ("1G", 1073741824), ("1234", 1234)]):
        cli("user", "add", f"u{n}@example.com", "--quota-storage", size, check=True)
        assert as_json(cli("quota", "show", f"u{n}@example.com", "--json"))[
            "storage_limit"] == expected


def test_mailboxes_and_messages(cli: Run, database_url: str) -> None:
    cli("user", "add", "joe@example.com", check=True)
    store_messages(database_url, "joe@example.com", [
        ("INBOX", MESSAGE, frozenset({"\\Seen"})),
        ("Lists/Python", MESSAGE, frozenset()),
        ("INBOX", b"no headers at all\r\n", frozenset()),
    ])
    size = len(b"Delivered-To: test\r\n") + len(MESSAGE)
    assert as_json(cli("mailbox", "list", "joe@example.com", "--json")) == [
        {"name": "INBOX", "messages": 2, "bytes": size + 20 + 19, "special_use": None},
        {"name": "Archive", "messages": 0, "bytes": 0, "special_use": "\\Archive"},
        {"name": "Drafts", "messages": 0, "bytes": 0, "special_use": "\\Drafts"},
        {"name": "Junk", "messages": 0, "bytes": 0, "special_use": "\\Junk"},
        {"name": "Lists/Python", "messages": 1, "bytes": size, "special_use": None},
        {"name": "Sent", "messages": 0, "bytes": 0, "special_use": "\\Sent"},
        {"name": "Trash", "messages": 0, "bytes": 0, "special_use": "\\Trash"},
    ]
    text_listing = cli("mailbox", "list", "joe@example.com", check=True).stdout.decode()
    assert "Junk  0 messages  0 bytes  \\Junk\n" in text_listing
    listed = as_json(cli("message", "list", "joe@example.com", "--json"))
    assert listed[0] == {"mailbox": "INBOX", "uid": 1, "size": size, "flags": ["\\Seen"],
                         "subject": "Hello there", "from": "Jörg <jorg@example.org>"}
    assert [(m["mailbox"], m["uid"]) for m in listed] == [
        ("INBOX", 1), ("INBOX", 2), ("Lists/Python", 1)]
    assert [m["uid"] for m in as_json(cli("message", "list", "joe@example.com", "--mailbox",
                                          "Lists/Python", "--json"))] == [1]
    shown = cli("message", "show", "joe@example.com", "inbox", "1", check=True).stdout
    assert shown == b"Delivered-To: test\r\n" + MESSAGE

    cli("message", "delete", "joe@example.com", "INBOX", "1", check=True)
    assert as_json(cli("quota", "show", "joe@example.com", "--json")) == {
        "storage_used": size + 39, "storage_limit": None, "messages_used": 2,
        "messages_limit": None}
    assert_one_line_error(cli("message", "show", "joe@example.com", "INBOX", "1"),
                          "no message with UID 1")


@pytest.mark.parametrize("argv", [
    ("user", "add"),
    ("user", "add", "not-an-address"),
    ("user", "add", "joe@exa mple.com"),
    ("user", "add", "x@example.com", "--quota-storage", "12Q"),
    ("user", "add", "x@example.com", "--quota-storage", "-5"),
    ("user", "add", "x@example.com", "--quota-messages", "many"),
    ("user", "add", "dup@example.com"),
    ("user", "delete", "nobody@example.com"),
    ("user", "delete", "@example.com"),
    ("user", "set-quota", "dup@example.com"),
    ("user", "set-quota", "dup@example.com", "--storage", "lots"),
    ("user", "set-quota", "dup@example.com", "--messages", "-1"),
    ("user", "set-quota", "nobody@example.com", "--storage", "1K"),
    ("user", "list", "--bogus"),
    ("user", "frobnicate"),
    ("quota", "show", "nobody@example.com", "--json"),
    ("quota", "show"),
    ("mailbox", "list", "nobody@example.com"),
    ("message", "list", "dup@example.com", "--mailbox", "Nope"),
    ("message", "list", "dup@example.com", "--mailbox", "a//b"),
    ("message", "show", "dup@example.com", "INBOX", "x"),
    ("message", "show", "dup@example.com", "INBOX", "0"),
    ("message", "show", "dup@example.com", "INBOX", "9"),
    ("message", "show", "dup@example.com", "Nope", "1"),
    ("message", "delete", "dup@example.com", "INBOX", "9"),
    ("message", "delete", "nobody@example.com", "INBOX", "1"),
    ("nosuchcommand",),
])
def test_bad_input_is_one_line_and_non_zero(cli: Run, argv: tuple[str, ...]) -> None:
    cli("user", "add", "dup@example.com", check=True)
    assert_one_line_error(cli(*argv))
    assert [u["address"] for u in as_json(cli("user", "list", "--json"))] == ["dup@example.com"]


def test_dead_database_is_one_line(mda: Run, mda_env: dict[str, str]) -> None:
    env = dict(mda_env, MDA_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    for argv in (("db", "upgrade"), ("user", "list"), ("user", "add", "joe@example.com"),
                 ("quota", "show", "joe@example.com", "--json")):
        assert_one_line_error(mda(*argv, env=env), "unavailable")


def test_bad_settings_are_one_line(mda: Run, mda_env: dict[str, str]) -> None:
    env = dict(mda_env, MDA_MAX_MESSAGE_SIZE="huge")
    assert_one_line_error(mda("user", "list", env=env), "MDA_MAX_MESSAGE_SIZE")
    env = dict(mda_env, MDA_DATABASE_URL="nosuch+driver:///x")
    assert_one_line_error(mda("user", "list", env=env), "invalid setting MDA_DATABASE_URL",
                          "nosuch is not a database")
