#!/usr/bin/env python3
"""What `/metrics` with `mda serve --workers N` costs (`mda.metrics` multiprocess mode).

Printed:
1. the metric updates of one delivery (one recipient outcome, the seven LMTP replies of a
   one-recipient transaction on its own connection, one latency observation), in
   microseconds, with in-memory values (one process) and with file-backed ones (a worker);
2. one `/metrics` answer (`mda.metrics.exposition()`, the files read and summed) in
   milliseconds and its size in bytes, for directories holding the files of 2, 8, 32 and
   128 worker processes: a worker that is replaced leaves its files, so a long-running
   service with restarts has more files than workers.

Every process is forked from this one, as mda's workers are from the pre-fork parent.

    python benchmarks/metrics_multiprocess.py
    python benchmarks/metrics_multiprocess.py --deliveries 50000 --files 2 16 256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mda import metrics  # noqa: E402

REPLIES = ("220 mx", "250 mx", "250 2.1.0 ok", "250 2.1.5 ok", "354 go", "250 2.0.0 ok",
           "221 bye")


def one_delivery() -> None:
    """The hooks mda calls for one one-recipient transaction on its own connection."""
    metrics.lmtp_replies(REPLIES)
    metrics.recipient_outcome("stored", "data")
    metrics.delivery_finished(0.004)


def per_delivery_us(deliveries: int) -> float:
    started = time.perf_counter()
    for _ in range(deliveries):
        one_delivery()
    return (time.perf_counter() - started) / deliveries * 1e6


def in_child(work: Callable[..., object], *args: object) -> str:
    """Run `work(*args)` in a forked process; what it returns comes back as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.write(write, str(work(*args)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    return text


def file_backed_us(directory: Path, deliveries: int) -> float:
    metrics.use_multiprocess(directory, 1)
    return per_delivery_us(deliveries)


def fill(directory: Path, slot: int) -> int:
    """A worker that delivered a little and exited."""
    metrics.use_multiprocess(directory, slot)
    for _ in range(10):
        one_delivery()
    return 0


def scrape(directory: Path, repeat: int) -> str:
    metrics.use_multiprocess(directory, 0)
    body = metrics.exposition()
    started = time.perf_counter()
    for _ in range(repeat):
        metrics.exposition()
    return f"{(time.perf_counter() - started) / repeat * 1000:.2f} {len(body)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=20000)
    parser.add_argument("--files", type=int, nargs="+", default=[2, 8, 32, 128],
                        help="worker processes whose files the directory holds")
    parser.add_argument("--repeat", type=int, default=20, help="scrapes timed per size")
    args = parser.parse_args()

    memory = float(in_child(per_delivery_us, args.deliveries))
    with tempfile.TemporaryDirectory() as tmp:
        files = float(in_child(file_backed_us, Path(tmp), args.deliveries))
    print(f"metric updates per delivery: {memory:.1f} us in memory, {files:.1f} us "
          "file-backed")

    for count in args.files:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            for slot in range(1, count):
                in_child(fill, directory, slot)
            for name in os.listdir(directory):  # the dead workers, as the parent marks them
                if name.startswith("gauge_liveall_"):
                    metrics.worker_exited(directory, int(name[:-3].rsplit("_", 1)[1]))
            ms, size = in_child(scrape, directory, args.repeat).split()
            print(f"/metrics with the files of {count:4d} workers: {float(ms):7.2f} ms, "
                  f"{int(size)} bytes, {len(os.listdir(directory))} files")


if __name__ == "__main__":
    main()
