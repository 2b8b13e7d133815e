"""`mda serve --workers N`: a pre-fork parent that owns the listening sockets.

Why a parent that binds, rather than N processes each binding with SO_REUSEPORT:
- it works for every listener mda has, unix-domain sockets included (Postfix's
  `lmtp:unix:private/mda`); SO_REUSEPORT is TCP/UDP only;
- there is one kernel accept queue per address, owned by a process that never serves a
  connection: a worker that dies or hangs loses nothing queued (with SO_REUSEPORT the kernel
  hashes each new connection to one worker's own queue, and what waits there is reset when
  that worker dies, or waits for a hung one), and a restarted worker accepts from the same
  queue at once;
- port 0 works (the parent learns the port once), and no other process can join the port.
Every worker is woken for a new connection and one takes it; `mda.server.SharedAcceptor`
makes that the least busy one.

A `/metrics` scrape is answered by one worker but counts for all: with an HTTP listener the
parent creates a private directory (mode 0700) before forking and every worker keeps its
metric values there (`mda.metrics`, prometheus-client's multiprocess mode); any worker's
`/metrics` sums every file, those of dead workers included. ManageSieve's failed-login
throttle stays per worker (each worker counts its own failures).

Lifecycle (`run`):
1. The caller has applied the migrations (once, here in the parent) and bound the sockets
   (`mda.server.bind_listeners`); the parent loads the TLS certificate, so a bad one stops
   the start with one error. With an HTTP listener the parent creates the metrics directory
   (`mda.metrics.create_multiprocess_directory`; one that cannot be created stops the start,
   exit status 1) and logs `pre-fork parent: /metrics on ADDRESS sums the N workers'
   metrics kept in DIR`.
2. The parent blocks SIGTERM, SIGINT and SIGCHLD and forks N workers. Each worker restores
   the signal mask, asks the kernel for SIGTERM should the parent die (Linux
   PR_SET_PDEATHSIG), switches its metrics to the shared directory
   (`mda.metrics.use_multiprocess`) and runs `mda.server.serve` on the inherited sockets
   with its own event loop and database pool; its log lines carry its pid.
3. A worker that exits while the service runs is replaced (`worker PID exited ...; starting
   another`). A worker that dies within `QUICK_EXIT` seconds of its start is restarted after
   a pause that doubles each time (1 s up to `MAX_RESTART_DELAY`); after `MAX_QUICK_EXITS`
   such deaths in a row in one slot the parent stops everything and exits 1, since something
   keeps every worker from starting. Every reaped worker is marked dead in the metrics
   directory (`mda.metrics.worker_exited`): its counters stay in the sums.
4. SIGTERM or SIGINT: the parent forwards SIGTERM to every worker; each shuts down
   gracefully (`mda.server`, `MDA_SHUTDOWN_TIMEOUT`); when all have exited the parent closes
   the sockets, removes the unix-domain socket files and the metrics directory, and exits 0
   (1 if a worker failed to stop cleanly). When the whole process group gets SIGTERM
   (systemd's KillMode=control-group, Ctrl-C in a terminal, `timeout`), each worker gets it
   twice, once from the parent, whenever that comes: a worker already shutting down ignores
   it to the end, and one still starting (no handler yet) that dies of it counts as
   stopped, not failed. A parent killed with SIGKILL removes nothing: its
   metrics directory stays behind (`mda-metrics-*` in `TMPDIR`).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mda import metrics
from mda.config import Settings
from mda.server import Listeners, log_sighup_ignored, serve

log = logging.getLogger("mda.server")

QUICK_EXIT = 5.0  # seconds: a worker that dies sooner is restarted after a pause
MAX_RESTART_DELAY = 30.0  # seconds: the longest pause before restarting a worker
MAX_QUICK_EXITS = 5  # quick deaths in a row (one slot) before the parent gives up
_PR_SET_PDEATHSIG = 1  # prctl(2) option: signal this process when its parent dies
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP}


@dataclass
class _Slot:
    """One of the N worker places: its current process and its restart history."""

    index: int
    pid: int | None = None
    started: float = 0.0
    quick_exits: int = 0
    restart_at: float | None = None  # monotonic time of a scheduled restart


@dataclass
class _Supervisor:
    """The parent's state."""

    settings: Settings
    listeners: Listeners
    tls_context: ssl.SSLContext | None
    slots: list[_Slot] = field(default_factory=list)
    stopping: bool = False
    forwarded: bool = False  # the stop came by SIGTERM or SIGINT, forwarded as SIGTERM
    failed: bool = False
    parent_pid: int = field(default_factory=os.getpid)
    metrics_dir: Path | None = None  # the workers' metric files; None without HTTP


def run(settings: Settings, listeners: Listeners, tls_context: ssl.SSLContext | None,
        workers: int) -> int:
    """Run `workers` worker processes on `listeners` until SIGTERM or SIGINT.

    Must be called from a process with no other thread and no running event loop (a fork
    copies only the calling thread).

    Args:
        settings: the service's settings (the database must already be migrated).
        listeners: the bound sockets; this function closes them (and removes unix-domain
            socket files) before it returns.
        tls_context: the loaded certificate for STARTTLS and implicit TLS, or None.
        workers: how many worker processes (>= 1).

    Returns:
        The exit status for the parent: 0 after a graceful stop, 1 when a worker did not
        stop cleanly, workers kept dying at start, or the metrics directory could not be
        created.
    """
    if threading.active_count() > 1:
        log.warning("forking workers with %d threads running; only this one is copied",
                    threading.active_count())
    supervisor = _Supervisor(settings, listeners, tls_context,
                             [_Slot(index) for index in range(workers)])
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        if listeners.http is not None:
            try:
                supervisor.metrics_dir = metrics.create_multiprocess_directory()
            except OSError as exc:
                log.error("pre-fork parent: cannot create the directory for the workers' "
                          "metrics: %s", exc)
                return 1
            log.info("pre-fork parent: /metrics on %s sums the %d workers' metrics kept in "
                     "%s", listeners.http.where, workers, supervisor.metrics_dir)
        log.info("pre-fork parent: starting %d workers on LMTP %s", workers,
                 listeners.lmtp.where)
        for slot in supervisor.slots:
            _spawn(supervisor, slot, old_mask)
        _supervise(supervisor, old_mask)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        listeners.close(unlink=True)
        if supervisor.metrics_dir is not None:
            _remove_metrics_dir(supervisor.metrics_dir)
    log.info("pre-fork parent: all workers stopped")
    return 1 if supervisor.failed else 0


def _remove_metrics_dir(directory: Path) -> None:
    """Remove the workers' metrics directory; a failure is logged, not raised."""
    try:
        metrics.remove_multiprocess_directory(directory)
    except OSError as exc:
        log.warning("pre-fork parent: cannot remove the metrics directory %s: %s",
                    directory, exc)


def _mark_dead(directory: Path, pid: int) -> None:
    """Tell the metrics directory a worker has exited; a failure is logged, not raised
    (the worker's `mda_worker_info` series would stay, nothing else)."""
    try:
        metrics.worker_exited(directory, pid)
    except OSError as exc:
        log.warning("pre-fork parent: cannot mark worker %d dead in %s: %s", pid, directory,
                    exc)


def _supervise(supervisor: _Supervisor, old_mask: set[signal.Signals]) -> None:
    """Wait for signals and worker exits until every worker has stopped."""
    while any(slot.pid is not None for slot in supervisor.slots) or (
            not supervisor.stopping and any(s.restart_at is not None for s in supervisor.slots)):
        info = signal.sigtimedwait(_SIGNALS, _next_wakeup(supervisor))
        if info is not None and info.si_signo == signal.SIGHUP:
            log_sighup_ignored()
        if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT) \
                and not supervisor.stopping:
            supervisor.forwarded = True
            _stop_all(supervisor, signal.Signals(info.si_signo).name)
        _reap(supervisor)
        now = time.monotonic()
        for slot in supervisor.slots:
            if slot.restart_at is not None and slot.restart_at <= now \
                    and not supervisor.stopping:
                _spawn(supervisor, slot, old_mask)


def _next_wakeup(supervisor: _Supervisor) -> float:
    """Seconds until the next scheduled restart (at most 1: exits are also polled)."""
    now = time.monotonic()
    due = [slot.restart_at - now for slot in supervisor.slots if slot.restart_at is not None]
    return max(0.01, min([1.0, *due]))


def _stop_all(supervisor: _Supervisor, why: str) -> None:
    """Forward SIGTERM to every worker and stop restarting them."""
    supervisor.stopping = True
    running = [slot.pid for slot in supervisor.slots if slot.pid is not None]
    log.info("pre-fork parent: %s: stopping %d workers (%s)", why, len(running),
             ", ".join(map(str, running)))
    for slot in supervisor.slots:
        slot.restart_at = None
        if slot.pid is not None:
            try:
                os.kill(slot.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _reap(supervisor: _Supervisor) -> None:
    """Collect every worker that has exited; schedule its replacement unless stopping."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        slot = next((s for s in supervisor.slots if s.pid == pid), None)
        if slot is None:
            continue
        slot.pid = None
        if supervisor.metrics_dir is not None:
            _mark_dead(supervisor.metrics_dir, pid)
        code = os.waitstatus_to_exitcode(status)
        how = f"exit status {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        if supervisor.stopping:
            if code == 0:
                log.info("pre-fork parent: worker %d stopped", pid)
            elif code == -signal.SIGTERM and supervisor.forwarded:
                # Before its handlers were installed (still starting): nothing in flight.
                log.info("pre-fork parent: worker %d stopped by the SIGTERM forwarded to it",
                         pid)
            else:
                supervisor.failed = True
                log.error("pre-fork parent: worker %d stopped with %s", pid, how)
            continue
        _schedule_restart(supervisor, slot, pid, how)


def _schedule_restart(supervisor: _Supervisor, slot: _Slot, pid: int, how: str) -> None:
    """Restart a worker that exited while serving: at once after a long life, after a
    doubling pause after a quick death, and give up after `MAX_QUICK_EXITS` in a row."""
    lived = time.monotonic() - slot.started
    slot.quick_exits = slot.quick_exits + 1 if lived < QUICK_EXIT else 0
    if slot.quick_exits >= MAX_QUICK_EXITS:
        log.error("pre-fork parent: worker %d exited with %s after %.1f s, the %d. quick exit "
                  "in a row; giving up", pid, how, lived, slot.quick_exits)
        supervisor.failed = True
        _stop_all(supervisor, "workers keep dying")
        return
    delay = 0.0 if slot.quick_exits == 0 else min(MAX_RESTART_DELAY,
                                                  2.0 ** (slot.quick_exits - 1))
    log.error("pre-fork parent: worker %d exited with %s after %.1f s; starting another%s",
              pid, how, lived, f" in {delay:.0f} s" if delay else "")
    slot.restart_at = time.monotonic() + delay


def _spawn(supervisor: _Supervisor, slot: _Slot, old_mask: set[signal.Signals]) -> None:
    """Fork one worker into `slot`."""
    slot.restart_at = None
    _flush_logs()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        os._exit(_worker(supervisor, slot, old_mask))
    slot.pid, slot.started = pid, time.monotonic()
    log.info("pre-fork parent: started worker %d (%d of %d)", pid, slot.index + 1,
             len(supervisor.slots))


def _worker(supervisor: _Supervisor, slot: _Slot, old_mask: set[signal.Signals]) -> int:
    """The worker process of `slot`: serve until SIGTERM; returns the exit status."""
    status = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        _die_with_parent(supervisor.parent_pid)
        if supervisor.metrics_dir is not None:
            metrics.use_multiprocess(supervisor.metrics_dir, slot.index + 1)
        asyncio.run(serve(supervisor.settings, supervisor.listeners, supervisor.tls_context))
        status = 0
    except BaseException:  # everything ends here: a worker never returns into the parent
        log.exception("worker failed")
    finally:
        _flush_logs()
    return status


def _die_with_parent(parent_pid: int) -> None:
    """Ask for SIGTERM when the parent dies (Linux); if it is already gone, stop now."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent forwards SIGTERM itself
        pass
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _flush_logs() -> None:
    """Write out buffered log output (before a fork, and before a worker's `os._exit`)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
