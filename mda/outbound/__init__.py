"""Outbound mail: the messages a Sieve script sends (redirect, vacation, notify), built and
handed to the MTA over SMTP.

```
delivery/ ──▶ outbound.compose    (pure: action + original message → OutgoingMessage bytes)
          └─▶ outbound.submission (aiosmtplib → MDA_SUBMISSION_URL; SubmissionError)
```

mda never delivers these itself: the MTA queues, retries and bounces them. Reject notices
are not sent from here (a Sieve reject is answered at the LMTP level and the MTA bounces).
When and whether a message is sent, and what happens on failure, is decided by
`mda.delivery` (see `mda.delivery.outbound`).
"""

from mda.outbound.compose import (
    DEFAULT_VACATION_SUBJECT,
    OutgoingMessage,
    notification,
    redirect_message,
    vacation_reply,
)
from mda.outbound.submission import (
    DEFAULT_PORTS,
    SubmissionConnection,
    SubmissionError,
    SubmissionTarget,
    Submitter,
)

__all__ = [
    "DEFAULT_PORTS", "DEFAULT_VACATION_SUBJECT", "OutgoingMessage", "SubmissionConnection",
    "SubmissionError", "SubmissionTarget", "Submitter", "notification", "redirect_message",
    "vacation_reply",
]
