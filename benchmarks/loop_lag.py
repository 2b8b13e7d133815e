#!/usr/bin/env python3
"""Event-loop lag of `mda serve` while it evaluates a heavy Sieve script.

Sieve evaluation runs in a worker thread, so the LMTP server's event loop must stay
responsive while a delivery is being filtered. This sets up a real `mda serve` (temporary
SQLite database, one user) whose active script has `--rules` rules; the message matches
only the last one, and `--heavy` of the rules use a `:regex` that backtracks for about
`--regex-share` of the default regex timeout (`MDA_SIEVE_REGEX_TIMEOUT`; the length of
the subject is calibrated on this machine). While one or more connections deliver `--messages` messages, another connection
sends `NOOP` every `--interval` ms and times each round trip: a blocked loop shows up as
slow NOOPs. The same probe runs on the idle server first, as the baseline.

Printed: the delivery latency, and NOOP round-trip p50/p99/max (ms) idle and under load;
the lag attributable to evaluation is the difference.

    python benchmarks/loop_lag.py                    # 200 rules, 3 heavy, 20 messages
    python benchmarks/loop_lag.py --heavy 10 --connections 2 --messages 40
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import regex

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lmtp_bench import percentile, run_cli, start_server  # noqa: E402

from mda.config import Settings  # noqa: E402
from tests.lmtp.client import LMTPClient  # noqa: E402

PATTERN = "(a|aa)+c"  # exponential backtracking on a run of a's without a c


def calibrate(timeout: float, share: float) -> int:
    """The number of a's for which PATTERN takes about `share` of `timeout` to fail."""
    compiled = regex.compile(PATTERN, regex.VERSION0)
    n = 10
    while n < 60:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            try:
                compiled.search("a" * n + "!", timeout=timeout)
            except TimeoutError:
                times.append(timeout)
                continue
            times.append(time.perf_counter() - started)
        if statistics.median(times) >= share * timeout:
            return n
        n += 1
    return n


def heavy_script(rules: int, heavy: int) -> str:
    """`rules` rules; `heavy` of them spread through the script run PATTERN on Subject."""
    lines = ['require ["fileinto", "mailbox", "regex"];']
    every = max(1, (rules - 1) // max(heavy, 1))
    placed = 0
    for n in range(rules - 1):
        if placed < heavy and n % every == 0:
            test = f'header :regex "subject" "{PATTERN}"'
            placed += 1
        elif n % 2:
            test = f'header :contains "subject" "invoice-{n}"'
        else:
            test = f'address :domain :is "from" "vendor{n}.example"'
        lines.append(f'if {test} {{ fileinto :create "Folder{n}"; stop; }}')
    lines.append('if header :contains "from" "load@bench.example" '
                 '{ fileinto :create "Bench"; }')
    return "\n".join(lines) + "\n"


def message(n: int, run: int) -> bytes:
    return (f"From: Load <load@bench.example>\r\nTo: lag@bench.test\r\n"
            f"Subject: {'a' * run}!\r\nMessage-ID: <{n}.{time.time_ns()}@lag>\r\n\r\n"
            "Heavy filtering ahead.\r\n").encode()


async def probe(host: str, port: int, interval: float, stop: asyncio.Event) -> list[float]:
    """NOOP round trips (ms) every `interval` seconds until `stop` is set."""
    client = await LMTPClient.connect(host, port)
    await client.lhlo("probe.client")
    rtts = []
    while not stop.is_set():
        started = time.perf_counter()
        reply = await client.command("NOOP")
        rtts.append((time.perf_counter() - started) * 1000)
        assert reply.code == 250, reply
        await asyncio.sleep(interval)
    await client.quit()
    return rtts


async def measure(host: str, port: int, user: str, args: argparse.Namespace, run: int
                  ) -> tuple[list[float], list[float], list[float], dict[str, int]]:
    """(idle NOOP ms, loaded NOOP ms, delivery ms, reply counts)."""
    interval = args.interval / 1000
    stop = asyncio.Event()
    idle_task = asyncio.create_task(probe(host, port, interval, stop))
    await asyncio.sleep(args.idle)
    stop.set()
    idle = await idle_task

    deliveries: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(args.messages))

    async def connection() -> None:
        client = await LMTPClient.connect(host, port)
        await client.lhlo("bench.client")
        for n in counter:
            started = time.perf_counter()
            result = await client.transaction("load@bench.example", [user], message(n, run))
            deliveries.append((time.perf_counter() - started) * 1000)
            for reply in result.after_data or [result.data or result.mail]:
                statuses[reply.status] = statuses.get(reply.status, 0) + 1
        await client.quit()

    stop = asyncio.Event()
    loaded_task = asyncio.create_task(probe(host, port, interval, stop))
    await asyncio.gather(*(connection() for _ in range(args.connections)))
    stop.set()
    return idle, await loaded_task, deliveries, statuses


def summary(values: list[float]) -> str:
    return (f"p50 {percentile(values, 0.5):6.1f}  p99 {percentile(values, 0.99):6.1f}  "
            f"max {max(values):6.1f} ms  (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--heavy", type=int, default=3, help="rules with the slow :regex")
    parser.add_argument("--regex-share", type=float, default=0.5,
                        help="fraction of the timeout each heavy regex should take")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--interval", type=float, default=5.0, help="ms between NOOPs")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of idle baseline")
    args = parser.parse_args()

    timeout = Settings.model_fields["sieve_regex_timeout"].default
    run = calibrate(timeout, args.regex_share)
    with tempfile.TemporaryDirectory(prefix="mda-lag-") as tmp:
        workdir = Path(tmp)
        setup = argparse.Namespace(database_url=None, rules=1, users=1)
        proc, where, users, env = start_server(setup, workdir)
        try:
            script = workdir / "heavy.sieve"
            script.write_text(heavy_script(args.rules, args.heavy))
            run_cli(env, "sieve", "put", users[0], "heavy", str(script), "--activate")
            host, _, port_text = where.rpartition(":")
            idle, loaded, deliveries, statuses = asyncio.run(
                measure(host.strip("[]"), int(port_text), users[0], args, run))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)

    print(f"script               {args.rules} rules, {args.heavy} with :regex \"{PATTERN}\" "
          f"on {run} a's (~{args.regex_share:.0%} of the {timeout} s regex timeout)")
    print("replies              " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
    print(f"delivery latency     {summary(deliveries)}")
    print(f"NOOP idle            {summary(idle)}")
    print(f"NOOP during delivery {summary(loaded)}")
    print(f"loop lag (p99, max)  {percentile(loaded, 0.99) - percentile(idle, 0.99):.1f} ms, "
          f"{max(loaded) - max(idle):.1f} ms over idle")
    return 0 if set(statuses) == {"250 2.0.0"} else 1


if __name__ == "__main__":
    sys.exit(main())
