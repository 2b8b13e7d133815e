"""mda's Prometheus metrics: what `/metrics` (`mda.http`) exposes.

One registry, `REGISTRY`, holds mda's own metrics and the process collectors of
prometheus-client (`process_*` resident memory, CPU seconds, open file descriptors;
`python_gc_*`, `python_info`). Every counter starts at 0 for each label value it can take, so
a series exists from the start and `rate()` sees its first increment.

| metric | type | labels | counts |
| --- | --- | --- | --- |
| `mda_deliveries_total` | counter | `result`, `stage` | recipient outcomes, the `result=` word of the log line (`stored`, `discarded`, `redirected`, `rejected`, `duplicate`, `over_quota`, `unknown_user`, `too_big`, `error`); `stage` is `rcpt` for refusals at RCPT, `data` after the message |
| `mda_lmtp_replies_total` | counter | `code` | every LMTP reply sent, by its three-digit code (a multi-line reply counts once) |
| `mda_delivery_duration_seconds` | histogram | | seconds from the end of a message's data to its replies, per LMTP transaction |
| `mda_sieve_errors_total` | counter | `kind` | Sieve problems recorded for users (`mda sieve errors`): `compile`, `runtime`, `warning` |
| `mda_quota_rejections_total` | counter | `stage` | recipients refused for quota (`552 5.2.2` or `452 4.2.2`), at `rcpt` or after `data` |
| `mda_managesieve_logins_total` | counter | `result` | ManageSieve logins: `ok`, `failed` (bad credentials), `throttled` (`NO (TRYLATER)` after too many failures) |

The counters are per process: with several `mda serve` processes, Prometheus sums them.
The functions below are the hooks the protocol and delivery layers call; none of them
raises for an unexpected label value (it becomes a series of its own) or touches I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

__all__ = [
    "REGISTRY",
    "DELIVERIES",
    "LMTP_REPLIES",
    "DELIVERY_SECONDS",
    "SIEVE_ERRORS",
    "QUOTA_REJECTIONS",
    "MANAGESIEVE_LOGINS",
    "recipient_outcome",
    "lmtp_replies",
    "delivery_finished",
    "sieve_problem",
    "managesieve_login",
]

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# The `result=` words of mda's per-recipient log lines (mda.lmtp, mda.delivery).
RESULTS = ("stored", "discarded", "redirected", "rejected", "duplicate", "over_quota",
           "unknown_user", "too_big", "error")
STAGES = ("rcpt", "data")
SIEVE_ERROR_KINDS = ("compile", "runtime", "warning")
LOGIN_RESULTS = ("ok", "failed", "throttled")
# Reply codes present from the start; any other code gets its series when first sent.
COMMON_REPLY_CODES = ("220", "221", "250", "354", "421", "451", "452", "501", "503", "550",
                      "552")
# Delivery latency buckets, in seconds: a small message to one user takes milliseconds; a
# large one, many recipients or a slow database, seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

DELIVERIES = Counter(
    "mda_deliveries", "Recipient outcomes, by result and by the stage that decided it",
    ("result", "stage"), registry=REGISTRY)
LMTP_REPLIES = Counter(
    "mda_lmtp_replies", "LMTP replies sent, by reply code", ("code",), registry=REGISTRY)
DELIVERY_SECONDS = Histogram(
    "mda_delivery_duration_seconds",
    "Seconds from the end of a message's data to its replies, per LMTP transaction",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)
SIEVE_ERRORS = Counter(
    "mda_sieve_errors", "Sieve problems recorded for users, by kind", ("kind",),
    registry=REGISTRY)
QUOTA_REJECTIONS = Counter(
    "mda_quota_rejections", "Recipients refused for quota, at RCPT or after the data",
    ("stage",), registry=REGISTRY)
MANAGESIEVE_LOGINS = Counter(
    "mda_managesieve_logins", "ManageSieve logins, by result", ("result",),
    registry=REGISTRY)

for _result in RESULTS:
    for _stage in STAGES:
        DELIVERIES.labels(_result, _stage)
for _code in COMMON_REPLY_CODES:
    LMTP_REPLIES.labels(_code)
for _kind in SIEVE_ERROR_KINDS:
    SIEVE_ERRORS.labels(_kind)
for _stage in STAGES:
    QUOTA_REJECTIONS.labels(_stage)
for _result in LOGIN_RESULTS:
    MANAGESIEVE_LOGINS.labels(_result)


def recipient_outcome(result: str, stage: str) -> None:
    """Count one recipient's outcome; an `over_quota` one is also a quota rejection.

    Args:
        result: the `result=` word of the log line (see `RESULTS`).
        stage: `rcpt` (refused at RCPT) or `data` (decided after the message).
    """
    DELIVERIES.labels(result, stage).inc()
    if result == "over_quota":
        QUOTA_REJECTIONS.labels(stage).inc()


def lmtp_replies(lines: Iterable[str | bytes]) -> None:
    """Count the replies among LMTP reply lines written to a client.

    A reply is a line `NNN text` (RFC 5321 §4.2.1); the `NNN-text` lines before the last line
    of a multi-line reply do not count on their own. Lines that do not start with three
    digits are ignored.

    Args:
        lines: reply lines as written, with or without their CRLF.
    """
    for line in lines:
        text = line.decode("ascii", "replace") if isinstance(line, bytes) else line
        code, separator = text[:3], text[3:4]
        if code.isdigit() and len(code) == 3 and separator in (" ", "\r", "\n", ""):
            LMTP_REPLIES.labels(code).inc()


def delivery_finished(seconds: float) -> None:
    """Observe one LMTP transaction's delivery time.

    Args:
        seconds: from the end of the message data to the replies being ready.
    """
    DELIVERY_SECONDS.observe(seconds)


def sieve_problem(kind: str) -> None:
    """Count one Sieve problem recorded for a user.

    Args:
        kind: `compile`, `runtime` or `warning`.
    """
    SIEVE_ERRORS.labels(kind).inc()


def managesieve_login(result: str) -> None:
    """Count one ManageSieve login attempt (AUTHENTICATE with complete credentials).

    Args:
        result: `ok`, `failed` or `throttled`.
    """
    MANAGESIEVE_LOGINS.labels(result).inc()
