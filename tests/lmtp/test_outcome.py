"""`replies_after_data`: exactly one reply per accepted recipient, in RCPT order, on every
path (RFC 2033 §4.2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mda import replies
from mda.delivery import RecipientOutcome
from mda.lmtp import Delivered, Failed, TooBig, replies_after_data
from tests.lmtp import statuscodes as S

addresses = st.lists(st.from_regex(r"[a-z]{1,8}@example\.org", fullmatch=True), max_size=8)


def status(reply: replies.Reply) -> str:
    return f"{reply.code} {reply.enhanced}"


def outcome(rcpt: str, reply: replies.Reply) -> RecipientOutcome:
    return RecipientOutcome(recipient=rcpt, reply=reply, result="stored", mailboxes=("INBOX",),
                            elapsed_ms=1.0)


@given(addresses)
def test_too_big_answers_552_for_each(recipients: list[str]) -> None:
    answers = replies_after_data(recipients, TooBig(100))
    assert [status(a) for a in answers] == [S.TOO_BIG] * len(recipients)
    assert all(f"<{r}>" in a.text for r, a in zip(recipients, answers))


@given(addresses)
def test_failure_answers_451_for_each(recipients: list[str]) -> None:
    answers = replies_after_data(recipients, Failed())
    assert [status(a) for a in answers] == [S.TEMP_FAILURE] * len(recipients)


@given(addresses, st.integers(min_value=0, max_value=10))
def test_delivered_keeps_order_and_fills_gaps(recipients: list[str], keep: int) -> None:
    outcomes = [outcome(r, replies.delivered(r)) for r in recipients][:keep]
    answers = replies_after_data(recipients, Delivered(outcomes))
    assert len(answers) == len(recipients)
    for index, (rcpt, answer) in enumerate(zip(recipients, answers)):
        expected = S.DELIVERED if index < keep else S.TEMP_FAILURE
        assert status(answer) == expected and f"<{rcpt}>" in answer.text


def test_an_outcome_for_another_recipient_is_not_passed_on() -> None:
    outcomes = [outcome("b@x.org", replies.delivered("b@x.org")),
                outcome("a@x.org", replies.sieve_reject("a@x.org", "no"))]
    answers = replies_after_data(["a@x.org", "b@x.org"], Delivered(outcomes))
    assert [status(a) for a in answers] == [S.TEMP_FAILURE, S.TEMP_FAILURE]
