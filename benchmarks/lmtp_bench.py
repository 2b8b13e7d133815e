#!/usr/bin/env python3
"""LMTP delivery benchmark: N concurrent connections against a real `mda serve`.

By default it sets up everything in a temporary directory: a SQLite database, `--users`
users each with the same `--rules`-rule Sieve script (the message matches only the last
rule, so every rule is evaluated), and an `mda serve` on a free port. Each connection then
delivers `--size`-byte messages, one recipient per transaction, until `--messages` have
been sent in total.

Printed: deliveries per second, p50/p99 latency of a transaction (MAIL to the reply after
DATA, ms) and the server's peak RSS (VmHWM from /proc/<pid>/status, MB). With `--workers N`
the server is a pre-fork parent with N workers: the peak RSS is the largest worker's, and
the deliveries each worker made are printed too.

    python benchmarks/lmtp_bench.py                      # 8 connections, 10 KB, 20 rules
    python benchmarks/lmtp_bench.py --connections 32 --messages 5000
    python benchmarks/lmtp_bench.py --database-url postgresql+asyncpg://postgres@127.0.0.1/test
    python benchmarks/lmtp_bench.py --database-url postgresql+asyncpg://... --workers 2 --seconds 30
    python benchmarks/lmtp_bench.py --target 127.0.0.1:2424 --users-exist u0@bench.test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lmtp.client import LMTPClient  # noqa: E402

MDA = str(Path(sys.executable).with_name("mda"))


def sieve_script(rules: int) -> str:
    """A script of `rules` if-rules; only the last one matches the benchmark message."""
    lines = ['require ["fileinto", "mailbox"];']
    for n in range(rules - 1):
        test = ("header :contains \"subject\" \"invoice-{n}\"" if n % 3 == 0 else
                "address :domain :is \"from\" \"vendor{n}.example\"" if n % 3 == 1 else
                "header :matches \"list-id\" \"*list{n}.example*\"").format(n=n)
        lines.append(f'if {test} {{ fileinto :create "Folder{n}"; stop; }}')
    lines.append('if header :contains "subject" "benchmark" { fileinto :create "Bench"; }')
    return "\n".join(lines) + "\n"


def message(size: int, n: int) -> bytes:
    """A message of exactly `size` bytes with 76-character body lines."""
    head = (f"From: Load Generator <load@bench.example>\r\nTo: bench@bench.test\r\n"
            f"Subject: benchmark message {n}\r\nMessage-ID: <{n}.{time.time_ns()}@bench>\r\n"
            f"\r\n").encode()
    body_len = max(size - len(head), 2)
    line = b"x" * 76 + b"\r\n"
    body = line * (body_len // len(line))
    rest = body_len - len(body)
    if rest >= 2:
        body += b"y" * (rest - 2) + b"\r\n"
    elif rest == 1:
        body = b"z" + body
    return head + body


def run_cli(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run([MDA, *args], env=env, capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"mda {' '.join(args)} failed: {proc.stderr.decode().strip()}")


def start_server(args: argparse.Namespace, workdir: Path, per_worker: dict[int, int]
                 ) -> tuple[subprocess.Popen, str, list[str], dict[str, str]]:
    """Set up the database, users and script; start `mda serve` (with `--workers`); return
    (proc, where, users, env). `per_worker` is filled with deliveries per worker pid."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDA_")}
    env["MDA_DATABASE_URL"] = args.database_url or f"sqlite+aiosqlite:///{workdir / 'bench.sqlite3'}"
    env["MDA_LMTP_LISTEN"] = "127.0.0.1:0"
    env["MDA_HOSTNAME"] = "bench.test"
    env["MDA_SIEVE_SCRIPTS_DIR"] = str(workdir / "sieve_scripts")
    env["MDA_LOG_LEVEL"] = "INFO"  # the startup line tells us the port
    env["MDA_WORKERS"] = str(args.workers)
    script = workdir / "rules.sieve"
    script.write_text(sieve_script(args.rules))
    run_cli(env, "db", "upgrade")
    users = [f"u{n}-{os.getpid()}@bench.test" for n in range(args.users)]
    for user in users:
        run_cli(env, "user", "add", user)
        run_cli(env, "sieve", "put", user, "rules", str(script), "--activate")
    proc = subprocess.Popen([MDA, "serve"], env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    where = ""
    log: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        raw = proc.stderr.readline()
        if not raw:
            break
        line = raw.decode("utf-8", "replace")
        log.append(line)
        match = re.search(r"listening for LMTP on (\S+)", line)
        if match:
            where = match.group(1)
            break
    if not where:
        proc.kill()
        sys.exit("mda serve did not start:\n" + "".join(log))
    # Keep draining stderr so the server never blocks on a full pipe; count who delivered.
    threading.Thread(target=count_deliveries, args=(proc.stderr, per_worker),
                     daemon=True).start()
    return proc, where, users, env


def count_deliveries(stream, per_worker: dict[int, int]) -> None:
    """Read the server's log to its end, counting `result=` lines per worker pid."""
    for raw in stream:
        match = re.search(rb"mda\.lmtp\[(\d+)\]: .* result=", raw)
        if match:
            pid = int(match.group(1))
            per_worker[pid] = per_worker.get(pid, 0) + 1


def workers_peak_rss_mb(pid: int) -> float | None:
    """The largest peak RSS among the process and its children (the workers), in MB."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    values = [v for v in (peak_rss_mb(p) for p in [pid, *map(int, children)]) if v is not None]
    return max(values) if values else None


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM) in MB, or None if unavailable."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else None


async def drive(host: str, port: int, users: list[str], args: argparse.Namespace
                ) -> tuple[list[float], dict[str, int], float]:
    """Run the load (`--messages` transactions, or as many as fit in `--seconds`); return
    (latencies in ms, reply status counts, elapsed seconds)."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(args.messages))
    payloads = [message(args.size, n) for n in range(64)]
    deadline = time.perf_counter() + args.seconds if args.seconds else None

    async def connection(index: int) -> None:
        client = await LMTPClient.connect(host, port)
        await client.lhlo("bench.client")
        for n in counter:
            if deadline is not None and time.perf_counter() > deadline:
                break
            rcpt = users[(index + n) % len(users)]
            started = time.perf_counter()
            result = await client.transaction("load@bench.example", [rcpt],
                                              payloads[n % len(payloads)])
            latencies.append((time.perf_counter() - started) * 1000)
            for reply in result.after_data or [result.data or result.mail]:
                statuses[reply.status] = statuses.get(reply.status, 0) + 1
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(args.connections)))
    return latencies, statuses, time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--messages", type=int, default=2000, help="total transactions")
    parser.add_argument("--size", type=int, default=10 * 1024, help="message size in bytes")
    parser.add_argument("--rules", type=int, default=20, help="rules in the Sieve script")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="default: a temp SQLite file")
    parser.add_argument("--workers", type=int, default=1,
                        help="mda serve --workers N (pre-fork worker processes)")
    parser.add_argument("--seconds", type=float, default=0,
                        help="stop after this many seconds (with --messages as an upper bound)")
    parser.add_argument("--target", default=None,
                        help="host:port of a running mda serve (skips set-up; needs --users-exist)")
    parser.add_argument("--users-exist", nargs="*", default=[],
                        help="recipients that exist on --target")
    parser.add_argument("--pid", type=int, default=None, help="--target's pid, for peak RSS")
    args = parser.parse_args()

    proc = None
    per_worker: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="mda-bench-") as tmp:
        if args.target:
            if not args.users_exist:
                parser.error("--target needs --users-exist")
            host, _, port_text = args.target.rpartition(":")
            host, port, users, pid = host.strip("[]"), int(port_text), args.users_exist, args.pid
        else:
            proc, where, users, _ = start_server(args, Path(tmp), per_worker)
            host, _, port_text = where.rpartition(":")
            port, pid = int(port_text), proc.pid
        try:
            latencies, statuses, elapsed = asyncio.run(drive(host, port, users, args))
            rss = workers_peak_rss_mb(pid) if pid else None
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)

    print(f"connections          {args.connections}")
    print(f"workers              {args.workers}" + (
        " (deliveries per worker: " + ", ".join(map(str, sorted(per_worker.values(), reverse=True)))
        + ")" if args.workers > 1 else ""))
    print(f"messages             {len(latencies)} x {args.size} bytes, {args.rules}-rule script,"
          f" {len(users)} user(s)")
    print(f"replies              " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    print(f"deliveries/second    {len(latencies) / elapsed:.1f}")
    print(f"latency p50          {percentile(latencies, 0.50):.1f} ms")
    print(f"latency p99          {percentile(latencies, 0.99):.1f} ms")
    print(f"latency mean         {statistics.fmean(latencies):.1f} ms")
    print(f"server peak RSS      " + (f"{rss:.1f} MB" if rss is not None else "unknown"))
    return 0 if set(statuses) == {"250 2.0.0"} else 1


if __name__ == "__main__":
    sys.exit(main())
