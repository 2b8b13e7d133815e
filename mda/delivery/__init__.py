"""Delivery: given a received message and its accepted recipients, what happens to each?

```python
deliverer = Deliverer(store, settings)
reply = await deliverer.check_recipient("joe+lists@example.com")   # None = accept the RCPT
outcomes = await deliverer.deliver(Transaction(queue_id, mail_from, recipients, data,
                                               peer, helo, received_at))
# exactly one RecipientOutcome per recipient, in RCPT order; never raises
```

See `mda.delivery.deliverer` for the steps, `mda.delivery.errors` for the failure → reply
table, `mda.delivery.headers` for the bytes added to each stored copy,
`mda.delivery.scripts` for the administrator's global Sieve scripts and
`mda.delivery.host` for how the engine's questions (includes, duplicate records,
special-use mailboxes) are answered, and `mda.delivery.outbound` for redirect, vacation and
notify: what is sent, in which order, and what a failed submission does.

`outbound_warnings(program, settings)` lists what a script would try to send on a server
without `MDA_SUBMISSION_URL` (for ManageSieve's `OK (WARNINGS)`).
"""

from mda.delivery.deliverer import DEFAULT_SCRIPT_NAME, REDIRECT_UNAVAILABLE, Deliverer
from mda.delivery.errors import reply_for
from mda.delivery.headers import header_prefix, normalize_line_endings
from mda.delivery.outbound import outbound_warnings
from mda.delivery.transaction import RESULTS, RecipientOutcome, Transaction

__all__ = [
    "DEFAULT_SCRIPT_NAME", "REDIRECT_UNAVAILABLE", "RESULTS", "Deliverer", "RecipientOutcome",
    "Transaction", "header_prefix", "normalize_line_endings", "outbound_warnings", "reply_for",
]
