"""redirect (RFC 5228 §4.2): the address is one RFC 5321 mailbox, checked at compile time when
constant and at run time otherwise; a message this user redirected before is not redirected
again (X-Sieve-Redirected-From), and the implicit keep then stays."""

from __future__ import annotations

import pytest

from mda.sieve import Environment, Keep, Redirect
from mda.sieve.core import normalise_redirect
from tests.sieve.helpers import MESSAGE, refused, run

VALID = ["a@example.net", " a@example.net ", "first.last+tag@example.net",
         '"two words"@example.net', "a@[192.0.2.1]", "jörg@bücher.example"]
INVALID = ["Name <a@example.net>", "<a@example.net>", "a@example.net (comment)",
           "a@example.net, b@example.net", "a", "@example.net", "a@", "a..b@example.net",
           "a@-example.net", "a@example.net.", "x" * 65 + "@example.net",
           "a@" + "b" * 250 + ".net", "a@exa mple.net", ""]


@pytest.mark.parametrize("address", VALID)
def test_valid_addresses_are_sent_as_written(address: str) -> None:
    assert normalise_redirect(address) == address.strip()
    result = run(f'redirect "{address.replace(chr(34), chr(92) + chr(34))}";')
    assert result.actions == (Redirect(address.strip()),)


@pytest.mark.parametrize("address", INVALID)
def test_invalid_constant_address_is_a_compile_error(address: str) -> None:
    error = refused(f'redirect "{address}";', "bad-value")
    assert "local@domain only" in str(error) and error.line == 1


def test_invalid_computed_address_is_a_runtime_error_and_keeps() -> None:
    script = ('require "variables";\nset "to" "Joe <joe@example.net>";\n'
              'redirect "${to}";\n')
    result = run(script)
    assert result.actions == (Keep(implicit=True),)
    [error] = result.errors
    assert "Joe <joe@example.net>" in error and "not a valid address" in error


LOOPED = b"X-Sieve-Redirected-From: <Bob@Example.com>\r\n" + MESSAGE


def test_a_message_redirected_by_this_user_keeps_instead() -> None:
    result = run('redirect "other@example.net";', LOOPED,
                 environment=Environment(user_addresses=("bob@example.com",)))
    assert result.actions == (Keep(implicit=True),)
    [warning] = result.warnings
    assert "line 1" in warning and "X-Sieve-Redirected-From" in warning


def test_a_message_redirected_by_someone_else_is_redirected() -> None:
    result = run('redirect "other@example.net";', LOOPED,
                 environment=Environment(user_addresses=("carol@example.com",)))
    assert result.actions == (Redirect("other@example.net"),)


def test_the_envelope_recipient_counts_as_the_user() -> None:
    looped = b"X-Sieve-Redirected-From: bob+work@example.com\r\n" + MESSAGE
    result = run('require "fileinto";\nredirect "other@example.net";\nfileinto "Work";\n',
                 looped)
    assert [type(a).__name__ for a in result.actions] == ["FileInto"]  # fileinto still cancels
