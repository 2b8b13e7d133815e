"""Named reply statuses (`"<code> <enhanced code>"`) the LMTP tests expect, so a test reads
as the protocol rule it checks rather than as magic numbers."""

GREETING = 220
START_DATA = 354
CLOSING = "221 2.0.0"
SENDER_OK = "250 2.1.0"
RCPT_OK = "250 2.1.5"
DELIVERED = "250 2.0.0"
RESET_OK = "250 2.0.0"
UNKNOWN_USER = "550 5.1.1"
SIEVE_REJECT = "550 5.7.1"
OVER_QUOTA = "552 5.2.2"
OVER_QUOTA_TEMPFAIL = "452 4.2.2"
TOO_BIG = "552 5.3.4"
TEMP_FAILURE = "451 4.3.0"
NEED_RCPT = "503 5.5.1"
BAD_SEQUENCE = "503 5.5.1"
SYNTAX_ERROR = "501 5.5.4"
UNKNOWN_COMMAND = "500 5.5.2"
SHUTTING_DOWN = "421 4.3.2"
