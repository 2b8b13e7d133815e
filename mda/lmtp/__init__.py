"""LMTP (RFC 2033) server glue on aiosmtpd: parse, call `mda.delivery`, answer per recipient.

Modules:
- `protocol`: `LMTPProtocol`, aiosmtpd's `LMTP` subclassed (LHLO extensions, enhanced
  status codes, per-recipient replies after DATA on every path), and `ConnectionRegistry`
  (graceful shutdown).
- `handler`: `DeliveryHandler`, the MAIL/RCPT hooks and the call into the delivery layer
  (a recipient given twice is delivered once and answered twice).
- `data`: reading the message text after DATA (dot-unstuffing, size limit, smuggling
  defence).
- `chunking`: BDAT (RFC 3030): its argument, and the chunks of a message with the size
  limit across them.
- `paths`: `check_path`, the MAIL/RCPT path checks aiosmtpd does not make (angle brackets,
  control characters, `<>` as a recipient, UTF-8 only with SMTPUTF8).
- `outcome`: `replies_after_data`, the one function that turns the accepted recipients
  into exactly one reply each.

This package never imports SQLAlchemy; every reply text comes from `mda.replies`.
"""

from mda.lmtp.handler import DeliveryHandler, new_queue_id
from mda.lmtp.outcome import Delivered, Failed, TooBig, replies_after_data
from mda.lmtp.protocol import MAX_RECIPIENTS, ConnectionRegistry, LMTPProtocol

__all__ = [
    "ConnectionRegistry",
    "Delivered",
    "DeliveryHandler",
    "Failed",
    "LMTPProtocol",
    "MAX_RECIPIENTS",
    "TooBig",
    "new_queue_id",
    "replies_after_data",
]
