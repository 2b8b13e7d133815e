"""How delivery failures become LMTP replies: the one table, per recipient.

```
Exception (raised while delivering to one recipient)
 ├── UserNotFound, InvalidAddress   → 550 5.1.1 (the user went away since RCPT)  "unknown_user"
 ├── QuotaExceeded                   → 552 5.2.2, or 452 4.2.2 when
 │                                     MDA_QUOTA_FULL_TEMPFAIL is set               "over_quota"
 ├── StoreUnavailable                → 451 4.3.0, nothing written                   "error"
 ├── SubmissionError                 → 451 4.3.0: the MTA did not take a redirect or
 │                                     notification for now; nothing written, the
 │                                     reason logged here                           "error"
 ├── DeliveryBudgetSpent             → 451 4.3.0: MDA_DELIVERY_BUDGET ran out before or
 │                                     while delivering to the recipient; its
 │                                     transaction rolled back, the reason logged   "error"
 └── anything else (a bug)           → 451 4.3.0 and a logged traceback; the
                                       exception text never reaches the wire        "error"
```

The store never formats replies; this module is where its exceptions meet `mda.replies`.
"""

from __future__ import annotations

import logging

from mda import replies
from mda.outbound import SubmissionError
from mda.replies import Reply
from mda.store import InvalidAddress, QuotaExceeded, StoreUnavailable, UserNotFound

log = logging.getLogger("mda.delivery")


class DeliveryBudgetSpent(Exception):
    """The time one LMTP transaction's deliveries may take together (`MDA_DELIVERY_BUDGET`)
    ran out before this recipient's delivery ended: it was not tried, or it was cancelled
    before its write transaction committed (rolled back, nothing stored). Temporary: the
    MTA retries the recipient later.

    Args:
        budget: the budget, in seconds.
        tried: whether the recipient's delivery had started (and was cancelled).
    """

    def __init__(self, budget: float, *, tried: bool) -> None:
        if tried:
            text = (f"delivery budget of {budget:g} s spent (MDA_DELIVERY_BUDGET) while "
                    "delivering; rolled back, nothing stored")
        else:
            text = f"not tried: delivery budget of {budget:g} s spent (MDA_DELIVERY_BUDGET)"
        super().__init__(text)
        self.budget = budget
        self.tried = tried


def reply_for(exc: Exception, recipient: str, *, quota_tempfail: bool,
              queue_id: str = "") -> tuple[Reply, str]:
    """The reply and outcome result for a failure while delivering to `recipient`.

    Args:
        exc: what was raised.
        recipient: the RCPT TO address as given.
        quota_tempfail: answer over-quota with 452 4.2.2 instead of 552 5.2.2.
        queue_id: for the log line.

    Returns:
        (reply, result) where result is one of "unknown_user", "over_quota", "error".
    """
    if isinstance(exc, (UserNotFound, InvalidAddress)):
        return replies.unknown_user(recipient), "unknown_user"
    if isinstance(exc, QuotaExceeded):
        return replies.over_quota(recipient, tempfail=quota_tempfail), "over_quota"
    if isinstance(exc, StoreUnavailable):
        log.warning("%s: <%s>: store unavailable: %s", queue_id, recipient, exc)
        return replies.temporary_failure(recipient), "error"
    if isinstance(exc, (SubmissionError, DeliveryBudgetSpent)):  # before the outcome line
        log.warning("%s: <%s>: deferred: %s", queue_id, recipient, exc)
        return replies.temporary_failure(recipient), "error"
    log.error("%s: <%s>: internal error while delivering", queue_id, recipient,
              exc_info=exc)
    return replies.temporary_failure(recipient), "error"
