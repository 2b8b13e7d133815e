"""What happened to a mail transaction after DATA, and the replies that follow from it.

RFC 2033 §4.2: "after the final ".", the server returns one reply for each previously
successful RCPT command in the mail transaction, in the order that the RCPT commands were
issued." `replies_after_data` is the one place that turns the ordered accepted recipients and
the transaction's fate into exactly that list, whatever the fate was:

- `Delivered`: the delivery layer answered; each recipient gets its own outcome's reply.
- `TooBig`: the message exceeded the size limit; `552 5.3.4` for every recipient.
- `Failed`: our code raised; `451 4.3.0` for every recipient (the MTA retries; nothing was
  answered 250, so nothing is lost).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from mda import replies
from mda.delivery import RecipientOutcome
from mda.replies import Reply

log = logging.getLogger("mda.lmtp")


@dataclass(frozen=True, slots=True)
class Delivered:
    """The delivery layer returned its outcomes (normally one per recipient, in order; None
    where it gave none for a recipient)."""

    outcomes: Sequence[RecipientOutcome | None]


@dataclass(frozen=True, slots=True)
class TooBig:
    """The message was larger than `limit` bytes (after dot-unstuffing)."""

    limit: int


@dataclass(frozen=True, slots=True)
class Failed:
    """An exception in our code ended the transaction before the delivery layer answered."""


DataResult = Delivered | TooBig | Failed


def replies_after_data(recipients: Sequence[str], result: DataResult) -> list[Reply]:
    """Exactly one reply per accepted recipient, in RCPT order (RFC 2033 §4.2).

    Args:
        recipients: the accepted RCPT addresses of the transaction, in RCPT order.
        result: what happened to the message.

    Returns:
        A list as long as `recipients`; entry i answers recipients[i]. When the delivery
        layer's outcomes do not line up with the recipients (a broken contract), the
        recipients without a matching outcome get `451 4.3.0` rather than someone else's
        reply, and the mismatch is logged.
    """
    if isinstance(result, TooBig):
        return [replies.message_too_big(result.limit, rcpt) for rcpt in recipients]
    if isinstance(result, Failed):
        return [replies.temporary_failure(rcpt) for rcpt in recipients]
    outcomes = list(result.outcomes)
    answers: list[Reply] = []
    for index, rcpt in enumerate(recipients):
        outcome = outcomes[index] if index < len(outcomes) else None
        if outcome is None or outcome.recipient != rcpt:
            log.error("delivery returned no outcome for recipient %d <%s>; answering 451",
                      index, rcpt)
            answers.append(replies.temporary_failure(rcpt))
        else:
            answers.append(outcome.reply)
    if len(outcomes) > len(recipients):
        log.error("delivery returned %d outcomes for %d recipients; extra ones ignored",
                  len(outcomes), len(recipients))
    return answers
