"""duplicate (RFC 7352) through a host that keeps records the way the delivery layer must:
written only after a delivery "commits", with an expiry."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mda.sieve import DuplicateMark, Environment, Keep, Result
from mda.sieve.extensions.duplicate import id_hash
from tests.sieve.helpers import refused, run

REQ = 'require ["duplicate", "fileinto", "variables"];\n'


def message(message_id: str | None = "<a1@example.org>", **extra: str) -> bytes:
    head = "From: alice@example.org\r\nTo: bob@example.com\r\n"
    if message_id is not None:
        head += f"Message-ID: {message_id}\r\n"
    head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in extra.items())
    return (head + "\r\nbody\r\n").encode()


@dataclass
class Mailstore:
    """Duplicate records of one user, with a clock (seconds)."""

    now: float = 0.0
    expiry: dict[str, float] = field(default_factory=dict)
    asked: list[tuple[str, int]] = field(default_factory=list)

    def mailbox_exists(self, name: str) -> bool:
        return name.upper() == "INBOX"

    def duplicate_seen(self, key: str, period: int) -> bool:
        self.asked.append((key, period))
        return self.expiry.get(key, -1.0) > self.now

    def deliver(self, script: str, msg: bytes, *, commit: bool = True,
                environment: Environment | None = None) -> Result:
        """Evaluate, then (if the delivery 'commits') write the duplicate records."""
        result = run(script, msg, host=self, environment=environment)
        if commit:
            for mark in result.duplicate_ids:
                self.expiry[mark.id_hash] = self.now + mark.seconds
        return result


def boxes(result: Result) -> list[str]:
    return sorted(getattr(a, "mailbox", "INBOX") for a in result.actions)


DUP = REQ + 'if duplicate { fileinto "Dup"; }'


def test_second_delivery_is_a_duplicate() -> None:
    store = Mailstore()
    first = store.deliver(DUP, message())
    assert boxes(first) == ["INBOX"]
    (mark,) = first.duplicate_ids
    assert mark == DuplicateMark(id_hash(None, False, "<a1@example.org>"), 12 * 3600)
    second = store.deliver(DUP, message())
    assert boxes(second) == ["Dup"]
    assert second.duplicate_ids == ()  # a seen ID is not re-recorded without :last
    assert boxes(store.deliver(DUP, message("<other@example.org>"))) == ["INBOX"]


def test_nothing_is_recorded_until_the_delivery_commits() -> None:
    store = Mailstore()
    store.deliver(DUP, message(), commit=False)  # e.g. the store failed: 451
    assert boxes(store.deliver(DUP, message())) == ["INBOX"]  # the retry is no duplicate


def test_records_expire() -> None:
    store = Mailstore()
    store.deliver(REQ + 'if duplicate :seconds 60 { fileinto "Dup"; }', message())
    store.now = 59
    assert boxes(store.deliver(DUP, message())) == ["Dup"]
    store.now = 61
    assert boxes(store.deliver(DUP, message())) == ["INBOX"]


def test_last_restarts_the_period_and_sees_plain_records() -> None:
    store = Mailstore()
    script = REQ + 'if duplicate :last :seconds 100 { fileinto "Dup"; }'
    assert boxes(store.deliver(script, message())) == ["INBOX"]
    store.now = 90
    again = store.deliver(script, message())
    assert boxes(again) == ["Dup"] and again.duplicate_ids[0].last  # re-recorded
    store.now = 150  # 60 s after the last delivery: still inside the renewed period
    assert boxes(store.deliver(script, message())) == ["Dup"]
    plain = Mailstore()
    plain.deliver(DUP, message())
    assert boxes(plain.deliver(script, message())) == ["Dup"]


def test_handles_header_and_uniqueid_are_tracked_apart() -> None:
    store = Mailstore()
    store.deliver(REQ + 'if duplicate :handle "lists" { stop; }', message())
    assert boxes(store.deliver(DUP, message())) == ["INBOX"]
    assert boxes(store.deliver(REQ + 'if duplicate :handle "lists" { fileinto "Dup"; }',
                               message())) == ["Dup"]
    by_header = REQ + 'if duplicate :header "x-ticket" { fileinto "Dup"; }'
    store.deliver(by_header, message("<1@x>", X_Ticket="T-7"))
    assert boxes(store.deliver(by_header, message("<2@x>", X_Ticket="T-7"))) == ["Dup"]
    computed = REQ + 'if header :matches "subject" "*" { set "s" "${1}"; } ' \
                     'if duplicate :uniqueid "${s}" { fileinto "Dup"; }'
    store.deliver(computed, message("<3@x>", Subject="weekly"))
    assert boxes(store.deliver(computed, message("<4@x>", Subject="weekly"))) == ["Dup"]


def test_missing_id_is_false_and_records_nothing() -> None:
    store = Mailstore()
    result = store.deliver(DUP, message(None))
    assert boxes(result) == ["INBOX"] and result.duplicate_ids == () and store.asked == []


def test_same_test_twice_asks_once_and_records_once() -> None:
    store = Mailstore()
    result = store.deliver(REQ + 'if duplicate { stop; } if duplicate { stop; } '
                           'if not duplicate { fileinto "New"; }', message())
    assert boxes(result) == ["New"]
    assert len(store.asked) == 1 and len(result.duplicate_ids) == 1


def test_runtime_error_records_nothing() -> None:
    store = Mailstore()
    result = store.deliver('require ["ihave", "duplicate"]; if not duplicate { error "boom"; }',
                           message())
    assert result.errors and result.actions == (Keep(implicit=True),)
    assert result.duplicate_ids == ()


def test_periods() -> None:
    store = Mailstore()
    env = Environment(duplicate_default_seconds=600, duplicate_max_seconds=3600)
    result = store.deliver(REQ + 'if duplicate { stop; }', message("<p1@x>"), environment=env)
    assert result.duplicate_ids[0].seconds == 600
    result = store.deliver(REQ + 'if duplicate :seconds 7200 { stop; }', message("<p2@x>"),
                           environment=env)
    assert result.duplicate_ids[0].seconds == 3600
    assert any("over the maximum" in w for w in result.warnings)


def test_without_duplicate_tracking_nothing_is_a_duplicate() -> None:
    result = run(DUP, message())  # the dry-run host has no duplicate_seen
    assert boxes(result) == ["INBOX"]


@pytest.mark.parametrize("bad", [
    'if duplicate :header "x" :uniqueid "y" { stop; }',
    'if duplicate :header "bad name" { stop; }',
    'if duplicate :seconds "10" { stop; }',
    'if duplicate "x" { stop; }',
])
def test_compile_errors(bad: str) -> None:
    refused(REQ + bad)


def test_needs_require() -> None:
    refused('if duplicate { stop; }', "missing-require")
