"""mda's Prometheus metrics: what `/metrics` (`mda.http`) exposes.

| metric | type | labels | counts |
| --- | --- | --- | --- |
| `mda_deliveries_total` | counter | `result`, `stage` | recipient outcomes, the `result=` word of the log line (`stored`, `discarded`, `redirected`, `rejected`, `duplicate`, `over_quota`, `unknown_user`, `too_big`, `error`); `stage` is `rcpt` for refusals at RCPT, `data` after the message |
| `mda_lmtp_replies_total` | counter | `code` | every LMTP reply sent, by its three-digit code (a multi-line reply counts once) |
| `mda_delivery_duration_seconds` | histogram | | seconds from the end of a message's data to its replies, per LMTP transaction |
| `mda_sieve_errors_total` | counter | `kind` | Sieve problems recorded for users (`mda sieve errors`): `compile`, `runtime`, `warning` |
| `mda_quota_rejections_total` | counter | `stage` | recipients refused for quota (`552 5.2.2` or `452 4.2.2`), at `rcpt` or after `data` |
| `mda_managesieve_logins_total` | counter | `result` | ManageSieve logins: `ok`, `failed` (bad credentials), `throttled` (`NO (TRYLATER)` after too many failures) |
| `mda_worker_info` | gauge | `pid`, `slot` | with `--workers` only: 1 for each live worker process, `slot` 1..N |

Every counter starts at 0 for each label value it can take, so a series exists from the
start and `rate()` sees its first increment.

One process (`mda serve` without `--workers`): the metrics live in this process's memory,
in `registry()`, beside prometheus-client's process collectors (`process_*` resident memory,
CPU seconds, open file descriptors of this process; `python_gc_*`; `python_info`).

Several workers (`mda serve --workers N`, `mda.prefork`): a scrape reaches whichever worker
accepts it, so every worker must answer with the sum of all. prometheus-client's
multiprocess mode does that: each worker keeps its values in memory-mapped files in one
directory, and `registry()` of any worker reads and sums every file there
(`MultiProcessCollector`). The pre-fork parent creates that directory before forking
(`create_multiprocess_directory`, mode 0700), each worker calls `use_multiprocess` before it
serves, the parent calls `worker_exited` for every worker it reaps and removes the
directory when it stops (`remove_multiprocess_directory`). The files of a worker that died
stay, so counters and histograms keep counting what it did: a restarted worker neither
loses nor repeats anything. `mda_worker_info` is a `liveall` gauge: `worker_exited` drops
the series of a dead worker. `process_*` is then given for every live worker with a `pid`
label (read from /proc, Linux); `python_gc_*`, which only the answering worker could give,
is left out.

prometheus-client chooses between in-memory and file-backed values once, when
`prometheus_client.values` is first imported, from the environment variable
`PROMETHEUS_MULTIPROC_DIR`. mda makes that choice itself instead: importing this module
sets in-memory values, whatever the environment says, and `use_multiprocess` switches a
worker to files and creates its metric objects again (those created at import, in the
parent before the fork, stay in memory and are no longer used). An administrator's
`PROMETHEUS_MULTIPROC_DIR` only names where the private directory is created (instead of
`TMPDIR`); mda never reads, sums or deletes anything else in it, and ignores it without
`--workers`.

The hook functions below are what the protocol and delivery layers call; none of them
raises for an unexpected label value (it becomes a series of its own) or does I/O beyond
writing its own memory-mapped file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = [
    "MULTIPROC_DIR_ENV",
    "registry",
    "exposition",
    "multiprocess_directory",
    "create_multiprocess_directory",
    "use_multiprocess",
    "worker_exited",
    "remove_multiprocess_directory",
    "recipient_outcome",
    "lmtp_replies",
    "delivery_finished",
    "sieve_problem",
    "managesieve_login",
]

# The variable prometheus-client reads (and the lower-case name it still accepts).
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LEGACY_MULTIPROC_DIR_ENV = "prometheus_multiproc_dir"
# The prefix of the private directory the pre-fork parent creates (tempfile adds 8 random
# characters).
DIRECTORY_PREFIX = "mda-metrics-"

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
WORKER_INFO = "mda_worker_info"


class _Metrics:
    """mda's metric objects, created together: at import (in memory), and again in a worker
    that switches to multiprocess mode (file-backed, `use_multiprocess`).

    Args:
        registry: where the in-memory metrics are registered; None in multiprocess mode,
            where `MultiProcessCollector` reads the files instead.
    """

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.deliveries = Counter(
            "mda_deliveries", "Recipient outcomes, by result and by the stage that decided it",
            ("result", "stage"), registry=registry)
        self.lmtp_replies = Counter(
            "mda_lmtp_replies", "LMTP replies sent, by reply code", ("code",),
            registry=registry)
        self.delivery_seconds = Histogram(
            "mda_delivery_duration_seconds",
            "Seconds from the end of a message's data to its replies, per LMTP transaction",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.sieve_errors = Counter(
            "mda_sieve_errors", "Sieve problems recorded for users, by kind", ("kind",),
            registry=registry)
        self.quota_rejections = Counter(
            "mda_quota_rejections", "Recipients refused for quota, at RCPT or after the data",
            ("stage",), registry=registry)
        self.managesieve_logins = Counter(
            "mda_managesieve_logins", "ManageSieve logins, by result", ("result",),
            registry=registry)
        for result in RESULTS:
            for stage in STAGES:
                self.deliveries.labels(result, stage)
        for code in COMMON_REPLY_CODES:
            self.lmtp_replies.labels(code)
        for kind in SIEVE_ERROR_KINDS:
            self.sieve_errors.labels(kind)
        for stage in STAGES:
            self.quota_rejections.labels(stage)
        for result in LOGIN_RESULTS:
            self.managesieve_logins.labels(result)


class _WorkersCollector:
    """Every worker's files summed (`MultiProcessCollector`), and `process_*` of each live
    worker with a `pid` label; the live workers are the pids of `mda_worker_info`.

    Args:
        directory: the multiprocess directory.
    """

    def __init__(self, directory: Path) -> None:
        self._files = MultiProcessCollector(None, path=str(directory))

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape (prometheus-client's collector protocol)."""
        families = list(self._files.collect())
        pids = sorted({sample.labels["pid"] for family in families
                       if family.name == WORKER_INFO for sample in family.samples},
                      key=int)
        yield from families
        yield from _process_families(pids)


def _process_families(pids: Iterable[str]) -> Iterable[Metric]:
    """prometheus-client's `process_*` families for these processes, one series per `pid`.
    A process that is gone by now contributes nothing."""
    merged: dict[str, Metric] = {}
    for pid in pids:
        collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)
        for family in collector.collect():
            target = merged.setdefault(
                family.name, Metric(family.name, family.documentation, family.type))
            for sample in family.samples:
                target.add_sample(sample.name, {**sample.labels, "pid": pid}, sample.value)
    return merged.values()


def _in_process_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


# In-memory values until a worker calls use_multiprocess, whatever PROMETHEUS_MULTIPROC_DIR
# says (see the module docstring): metric objects read `values.ValueClass` when created.
values.ValueClass = values.MutexValue
_registry = _in_process_registry()
_metrics = _Metrics(_registry)
_directory: Path | None = None


def registry() -> CollectorRegistry:
    """What `/metrics` exposes: this process's registry, or with workers the sum of every
    worker's files (`use_multiprocess`)."""
    return _registry


def exposition() -> bytes:
    """Every metric of `registry()` in the Prometheus text format 0.0.4."""
    return generate_latest(_registry)


def multiprocess_directory() -> Path | None:
    """The directory this worker writes its values to, or None in a single process."""
    return _directory


def create_multiprocess_directory() -> Path:
    """Create the private directory for the workers' metric files (in the pre-fork parent,
    before forking).

    It is a new directory of mode 0700 named `mda-metrics-` plus 8 random characters, in
    the directory named by `PROMETHEUS_MULTIPROC_DIR` when that is set and not empty, else
    in `TMPDIR` (the system's temporary directory).

    Returns:
        The directory's path.

    Raises:
        OSError: it cannot be created (no such parent directory, no permission, no space).
    """
    parent = (os.environ.get(MULTIPROC_DIR_ENV)
              or os.environ.get(_LEGACY_MULTIPROC_DIR_ENV) or None)
    return Path(tempfile.mkdtemp(prefix=DIRECTORY_PREFIX, dir=parent))


def use_multiprocess(directory: Path, slot: int) -> None:
    """Switch this process (a worker, after the fork, before it serves) to file-backed
    metrics in `directory`, and `registry()` to the sum of every worker's files.

    Sets `PROMETHEUS_MULTIPROC_DIR` to `directory` in this process's environment (where
    prometheus-client looks when it opens a value's file) and creates every metric again,
    with the value 0 in this process's files (or what a dead worker with the same pid left
    there, which stays in the sum either way).

    Args:
        directory: from `create_multiprocess_directory`.
        slot: this worker's place among the N, 1..N (`mda_worker_info`'s `slot`).

    Raises:
        RuntimeError: this process already uses multiprocess mode.
        OSError: a file cannot be created in `directory`.
    """
    global _registry, _metrics, _directory
    if _directory is not None:
        raise RuntimeError(f"metrics already use {_directory}")
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    values.ValueClass = values.get_value_class()
    metrics = _Metrics(None)
    Gauge(WORKER_INFO, "1 for each live worker process, by its pid and its slot 1..N",
          ("slot",), multiprocess_mode="liveall", registry=None).labels(str(slot)).set(1)
    registry = CollectorRegistry()
    registry.register(_WorkersCollector(directory))
    PlatformCollector(registry=registry)
    _registry, _metrics, _directory = registry, metrics, directory


def worker_exited(directory: Path, pid: int) -> None:
    """Bookkeeping for a worker that has exited (in the parent, once reaped): its
    `mda_worker_info` series goes; its counters and histograms stay in the sum.

    Args:
        directory: the multiprocess directory.
        pid: the worker's process id.
    """
    mark_process_dead(pid, str(directory))


def remove_multiprocess_directory(directory: Path) -> None:
    """Remove the directory and its files (in the parent, once every worker has stopped).
    A directory already gone is no error.

    Raises:
        OSError: it exists but cannot be removed.
    """
    try:
        shutil.rmtree(directory)
    except FileNotFoundError:
        pass


def recipient_outcome(result: str, stage: str) -> None:
    """Count one recipient's outcome; an `over_quota` one is also a quota rejection.

    Args:
        result: the `result=` word of the log line (see `RESULTS`).
        stage: `rcpt` (refused at RCPT) or `data` (decided after the message).
    """
    _metrics.deliveries.labels(result, stage).inc()
    if result == "over_quota":
        _metrics.quota_rejections.labels(stage).inc()


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
            _metrics.lmtp_replies.labels(code).inc()


def delivery_finished(seconds: float) -> None:
    """Observe one LMTP transaction's delivery time.

    Args:
        seconds: from the end of the message data to the replies being ready.
    """
    _metrics.delivery_seconds.observe(seconds)


def sieve_problem(kind: str) -> None:
    """Count one Sieve problem recorded for a user.

    Args:
        kind: `compile`, `runtime` or `warning`.
    """
    _metrics.sieve_errors.labels(kind).inc()


def managesieve_login(result: str) -> None:
    """Count one ManageSieve login attempt (AUTHENTICATE with complete credentials).

    Args:
        result: `ok`, `failed` or `throttled`.
    """
    _metrics.managesieve_logins.labels(result).inc()
