"""`/metrics` of `mda serve --workers N`: whichever worker answers a scrape, it counts what
every worker did (prometheus-client's multiprocess mode in a directory the pre-fork parent
owns), through a worker's SIGKILL and restart; the directory goes with the parent.

To know which worker answered a scrape, the test stops the other ones (SIGSTOP): a stopped
worker accepts nothing, so the connection can only reach the running one.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MDA_BIN
from tests.e2e.conftest import ServerProcess
from tests.lmtp import statuscodes as S
from tests.scale.conftest import Cli, Launch, worker_pids

USER = "carol@example.org"
HTTP_LINE = r"listening for HTTP on 127\.0\.0\.1:(\d+) "
METRICS_DIR_LINE = r"pre-fork parent: /metrics on \S+ sums the \d+ workers' metrics kept in (\S+)"
STORED_BY = re.compile(r"mda\.lmtp\[(\d+)\]: .* result=stored ")
CONNECTIONS_PER_ROUND = 4
TRANSACTIONS_PER_CONNECTION = 3

Samples = dict[str, float]


def message(n: int) -> bytes:
    return f"From: a@example.net\r\nSubject: m{n}\r\n\r\nbody {n}\r\n".encode()


def scrape(port: int) -> Samples:
    """GET /metrics: every sample, keyed `name{label="value",...}` (labels sorted)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


def pids_of(samples: Samples, name: str) -> set[int]:
    """The `pid` labels of a sample's series."""
    return {int(m.group(1)) for key in samples
            if (m := re.fullmatch(rf'{name}\{{pid="(\d+)"(?:,slot="\d+")?\}}', key))}


class Traffic:
    """LMTP traffic through one server, and what `/metrics` must say about it."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.connections = 0
        self.transactions = 0

    async def _connection(self, first: int) -> None:
        client = await self.server.client()
        try:
            for n in range(first, first + TRANSACTIONS_PER_CONNECTION):
                result = await client.transaction("a@example.net", [USER], message(n))
                assert [reply.status for reply in result.after_data] == [S.DELIVERED]
        finally:
            await client.quit()

    async def round(self) -> None:
        """`CONNECTIONS_PER_ROUND` connections at once, each with
        `TRANSACTIONS_PER_CONNECTION` transactions of one recipient."""
        firsts = [self.transactions + i * TRANSACTIONS_PER_CONNECTION
                  for i in range(CONNECTIONS_PER_ROUND)]
        await asyncio.gather(*(self._connection(first) for first in firsts))
        self.connections += CONNECTIONS_PER_ROUND
        self.transactions += CONNECTIONS_PER_ROUND * TRANSACTIONS_PER_CONNECTION

    async def stored_by(self) -> dict[int, int]:
        """How many `result=stored` lines each pid logged (waits up to 10 s for all of
        them: a reply can reach the client before its log line reaches the test)."""
        for _ in range(500):
            pids = [int(m.group(1)) for line in list(self.server.log)
                    if (m := STORED_BY.search(line))]
            if len(pids) >= self.transactions:
                break
            await asyncio.sleep(0.02)
        return {pid: pids.count(pid) for pid in set(pids)}

    async def until_delivered_by(self, pids: set[int], most_rounds: int = 15) -> None:
        """Rounds of traffic until every one of `pids` has stored a message."""
        for _ in range(most_rounds):
            await self.round()
            if pids <= set(await self.stored_by()):
                return
        raise AssertionError(f"not every worker of {pids} delivered: {await self.stored_by()}")

    def expected(self) -> dict[str, float]:
        """The exact totals, by sample: a connection is 220, LHLO 250, then per transaction
        MAIL 250, RCPT 250, DATA 354 and 250 after the data; QUIT 221."""
        c, t = self.connections, self.transactions
        return {
            'mda_deliveries_total{result="stored",stage="data"}': t,
            "mda_delivery_duration_seconds_count": t,
            'mda_lmtp_replies_total{code="220"}': c,
            'mda_lmtp_replies_total{code="250"}': c + 3 * t,
            'mda_lmtp_replies_total{code="354"}': t,
            'mda_lmtp_replies_total{code="221"}': c,
        }

    def check(self, samples: Samples) -> None:
        """Every expected sample has exactly its expected value."""
        expected = self.expected()
        assert {key: samples.get(key) for key in expected} == expected


@contextmanager
def only_running(answering: int, workers: list[int]) -> Iterator[None]:
    """Stop (SIGSTOP) every worker but `answering` for the duration."""
    stopped = [pid for pid in workers if pid != answering]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)


def scrape_each_worker(port: int, workers: list[int], traffic: Traffic) -> None:
    """Three scrapes answered by each worker in turn, and three by whichever: every one
    gives the exact totals, and the live workers' info and memory."""
    for answering in [*workers, None]:
        with only_running(answering, workers) if answering else nullcontext():
            for _ in range(3):
                samples = scrape(port)
                traffic.check(samples)
                assert pids_of(samples, "mda_worker_info") == set(workers)
                assert pids_of(samples, "process_resident_memory_bytes") == set(workers)


def logged(server: ServerProcess, pattern: str) -> str:
    """The first group of the first log line matching `pattern` (waits up to 10 s)."""
    match = re.search(pattern, server.wait_for_log(pattern))
    assert match is not None
    return match.group(1)


def start_workers(cli: Cli, launch: Launch, **settings: str
                  ) -> tuple[ServerProcess, list[int], int, Path]:
    """`mda serve --workers 2` with HTTP on a free port, on a migrated database with USER.

    Returns:
        The server, its workers' pids, its HTTP port and its metrics directory (whose mode
        0700 is asserted).
    """
    cli("db", "upgrade")
    cli("user", "add", USER)
    server = launch("--workers", "2", MDA_HTTP_LISTEN="127.0.0.1:0", **settings)
    workers = worker_pids(server, 2)
    directory = Path(logged(server, METRICS_DIR_LINE))
    assert directory.name.startswith("mda-metrics-")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    return server, workers, int(logged(server, HTTP_LINE)), directory


async def test_every_worker_answers_with_the_totals_of_all_through_a_restart(
        cli: Cli, launch: Launch, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    server, workers, port, directory = start_workers(
        cli, launch, TMPDIR=str(tmpdir), PROMETHEUS_MULTIPROC_DIR="")
    assert directory.parent == tmpdir

    traffic = Traffic(server)
    await traffic.until_delivered_by(set(workers))
    print(f"\n{traffic.transactions} deliveries, per worker: {await traffic.stored_by()}")
    scrape_each_worker(port, workers, traffic)

    os.kill(workers[0], signal.SIGKILL)
    server.wait_for_log(rf"worker {workers[0]} exited with signal SIGKILL .*starting another")
    replacement = worker_pids(server, 3)[2]
    workers = [replacement, workers[1]]
    # What the dead worker counted stays in the totals.
    scrape_each_worker(port, workers, traffic)

    # And they grow with what the new worker (and the old one) deliver.
    before = traffic.transactions
    await traffic.until_delivered_by({replacement})
    assert traffic.transactions > before
    scrape_each_worker(port, workers, traffic)

    assert server.stop() == 0
    assert not directory.exists()
    assert list(tmpdir.iterdir()) == []


def write_foreign_metrics(directory: Path) -> None:
    """Another program's prometheus-client file in `directory`: 1000 stored deliveries."""
    code = ("from prometheus_client import Counter\n"
            "Counter('mda_deliveries', 'x', ('result', 'stage'))"
            ".labels('stored', 'data').inc(1000)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60,
                   env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)})


async def test_prometheus_multiproc_dir_only_says_where_the_private_directory_goes(
        cli: Cli, launch: Launch, tmp_path: Path) -> None:
    chosen = tmp_path / "metrics"
    chosen.mkdir()
    write_foreign_metrics(chosen)
    foreign = sorted(chosen.iterdir())
    assert len(foreign) == 1 and foreign[0].name.startswith("counter_")
    server, workers, port, directory = start_workers(
        cli, launch, PROMETHEUS_MULTIPROC_DIR=str(chosen))
    assert directory.parent == chosen
    traffic = Traffic(server)
    await traffic.round()
    scrape_each_worker(port, workers, traffic)  # without the other program's 1000

    assert server.stop() == 0  # SIGTERM
    assert sorted(chosen.iterdir()) == foreign  # mda's directory is gone, nothing else


async def test_no_metrics_directory_without_an_http_listener(
        cli: Cli, launch: Launch, tmp_path: Path) -> None:
    cli("db", "upgrade")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    server = launch("--workers", "2", TMPDIR=str(tmpdir), PROMETHEUS_MULTIPROC_DIR="")
    worker_pids(server, 2)
    assert list(tmpdir.iterdir()) == []
    assert "/metrics" not in server.log_text()
    assert server.stop() == 0


def test_a_metrics_directory_that_cannot_be_made_stops_the_start(
        cli: Cli, instance_env: dict[str, str], tmp_path: Path) -> None:
    cli("db", "upgrade")
    missing = tmp_path / "missing"
    proc = subprocess.run(
        [MDA_BIN, "serve", "--workers", "2"], capture_output=True, timeout=60,
        env={**instance_env, "MDA_HTTP_LISTEN": "127.0.0.1:0",
             "PROMETHEUS_MULTIPROC_DIR": str(missing)})
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert "pre-fork parent: cannot create the directory for the workers' metrics: " \
           f"[Errno 2] No such file or directory: '{missing}/mda-metrics-" in stderr, stderr
    assert "started worker" not in stderr and "Traceback" not in stderr
