"""Address, subaddress, mailbox-name and script-name rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mda.store import (
    InvalidAddress,
    InvalidInput,
    InvalidMailboxName,
    InvalidScriptName,
    normalize_address,
    normalize_mailbox_name,
    normalize_script_name,
    normalize_special_use,
    split_subaddress,
)


@pytest.mark.parametrize(("given_", "canonical"), [
    ("joe@example.com", "joe@example.com"),
    ("Joe@EXAMPLE.Com", "Joe@example.com"),
    ("<joe@example.com>", "joe@example.com"),
    ("  joe@example.com ", "joe@example.com"),
    ("joe+list@example.com", "joe+list@example.com"),
    ("first.last@sub.example.org", "first.last@sub.example.org"),
    ('"odd local"@example.com', '"odd local"@example.com'),
    ("joe@[192.0.2.1]", "joe@[192.0.2.1]"),
    ("jörg@bücher.example", "jörg@bücher.example"),
])
def test_valid_addresses_get_lower_cased_domain(given_: str, canonical: str) -> None:
    assert normalize_address(given_) == canonical


@pytest.mark.parametrize("bad", [
    "", "   ", "<>", "joe", "@example.com", "joe@", "joe@@example.com", "jo e@example.com",
    "joe@exa mple.com", "joe@example..com", "joe@-example.com", "joe@example.com-",
    ".joe@example.com", "joe.@example.com", "jo..e@example.com", "joe\n@example.com",
    "joe@exam\x00ple.com", "a" * 65 + "@example.com", "joe@" + "a." * 130 + "com",
    "joe@exa_mple.com",
])
def test_invalid_addresses_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        normalize_address(bad)
    assert str(info.value)


@given(st.from_regex(r"\A[a-zA-Z0-9_+-]{1,20}@[a-zA-Z0-9]{1,10}(\.[a-zA-Z]{2,5}){1,3}\Z"))
def test_normalising_is_idempotent_and_keeps_the_local_part(address: str) -> None:
    once = normalize_address(address)
    assert normalize_address(once) == once
    assert once.rpartition("@")[0] == address.rpartition("@")[0]
    assert once.rpartition("@")[2] == address.rpartition("@")[2].lower()


@pytest.mark.parametrize(("address", "delimiters", "expected"), [
    ("joe+lists@example.com", "+", ("joe@example.com", "lists")),
    ("joe+a+b@example.com", "+", ("joe@example.com", "a+b")),
    ("joe+@example.com", "+", ("joe@example.com", "")),
    ("joe-lists@example.com", "+-", ("joe@example.com", "lists")),
    ("joe-lists@example.com", "+", ("joe-lists@example.com", None)),
    ("joe@example.com", "+", ("joe@example.com", None)),
    ("+joe@example.com", "+", ("+joe@example.com", None)),
    ("joe+x@example.com", "", ("joe+x@example.com", None)),
])
def test_subaddress_split(address: str, delimiters: str,
                          expected: tuple[str, str | None]) -> None:
    assert split_subaddress(address, delimiters) == expected


@pytest.mark.parametrize(("name", "canonical"), [
    ("INBOX", "INBOX"), ("inbox", "INBOX"), ("InBoX", "INBOX"), ("inbox/lists", "INBOX/lists"),
    ("Archive/2024", "Archive/2024"), ("Entwürfe", "Entwürfe"), ("inboxes", "inboxes"),
])
def test_mailbox_names(name: str, canonical: str) -> None:
    assert normalize_mailbox_name(name) == canonical


@pytest.mark.parametrize("bad", ["", "/", "a/", "/a", "a//b", "a\nb", "a\x00b", "x" * 1001])
def test_invalid_mailbox_names(bad: str) -> None:
    with pytest.raises(InvalidMailboxName):
        normalize_mailbox_name(bad)


@pytest.mark.parametrize("bad", ["", "a\x01", "a\x7f", "a\u2028b", "a\u0085", "é" * 257])
def test_invalid_script_names(bad: str) -> None:
    with pytest.raises(InvalidScriptName):
        normalize_script_name(bad)


def test_script_names_are_nfc() -> None:
    assert normalize_script_name("cafe\u0301") == "caf\u00e9"


@pytest.mark.parametrize(("attr", "canonical"), [
    ("\\Junk", "\\Junk"), ("\\junk", "\\Junk"), ("\\TRASH", "\\Trash"),
    ("\\X-Custom", "\\X-Custom"),
])
def test_special_use_attributes(attr: str, canonical: str) -> None:
    assert normalize_special_use(attr) == canonical


@pytest.mark.parametrize("bad", ["Junk", "\\", "\\a b", "\\a(b", "\\" + "x" * 32])
def test_invalid_special_use_attributes(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_special_use(bad)
