#!/usr/bin/env python3
"""Peak memory of `mda serve` for one large LMTP delivery.

Sets up a real `mda serve` in a temporary directory (a SQLite file by default; with
`--database-url postgresql+asyncpg://USER@HOST:PORT/DB` a new database is created on that
server, next to DB, and dropped at the end), adds `--recipients` users with enough quota
(optionally with the Sieve script `--sieve`: `header`, `body` (RFC 5173 `body :text`),
`body-raw` (`body :raw`), `body-content` (`body :content ["text", "application"]`, which
decodes the attachment too), `editheader` (RFC 5293)), delivers one small message to warm up, then one `--size`-byte message over LMTP
(DATA) to all recipients in one transaction, and reads it back with `mda message show`,
comparing the SHA-256. Only the LMTP listener runs.

The message (`--shape multipart`, the default) is multipart/mixed: a short text part and a
base64 attachment filling the rest (76-character lines); `--shape single` is one text/plain
7bit body of 76-character lines. Either is sent with CRLF line endings, or with bare LF (`--line-endings lf`),
which mda rewrites to CRLF.

Printed, in MiB (2^20 bytes):
- baseline RSS: the server's resident set just before the large message (after the warm-up);
- peak RSS: VmHWM from /proc/<pid>/status, reset just before the large message (writing 5 to
  /proc/<pid>/clear_refs); when the kernel refuses the reset, the highest VmRSS sampled
  every 2 ms is printed instead (and says so);
- the peak over the baseline, in MiB and as a multiple of the message size;
- the time from the first byte of DATA to the last reply, and from the final "." to the last
  reply (the delivery itself);
- the peak RSS of the `mda message show` process that read the message back.

    python benchmarks/large_message.py                      # 50 MiB, 1 recipient, SQLite
    python benchmarks/large_message.py --recipients 3
    python benchmarks/large_message.py --size 10M --sieve body
    python benchmarks/large_message.py --sieve body-raw --shape single
    python benchmarks/large_message.py --line-endings lf
    python benchmarks/large_message.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lmtp.client import LMTPClient, dot_stuff  # noqa: E402

MDA = str(Path(sys.executable).with_name("mda"))
MIB = 1024 * 1024

SCRIPTS = {
    "none": None,
    # header tests and a fileinto: what most users' scripts do
    "header": 'require ["fileinto", "mailbox"];\n'
              'if header :contains "subject" "large" { fileinto :create "Large"; }\n',
    # the body extension (RFC 5173) looks at the text part
    "body": 'require ["body", "fileinto", "mailbox"];\n'
            'if body :text :contains "needle" { fileinto :create "Found"; }\n',
    # the whole body as transferred, one string
    "body-raw": 'require ["body", "fileinto", "mailbox"];\n'
                'if body :raw :contains "no such needle" { fileinto :create "Found"; }\n',
    # every text and application part decoded (base64 undone), one string each
    "body-content": 'require ["body", "fileinto", "mailbox"];\n'
                    'if body :content ["text", "application"] :contains "no such needle" '
                    '{ fileinto :create "Found"; }\n',
    # editheader (RFC 5293): the copy gets a blob of its own
    "editheader": 'require ["editheader"];\naddheader "X-Large" "yes";\n',
}


def parse_size(text: str) -> int:
    """Bytes from `123`, `10K`, `50M` or `1G` (binary multiples)."""
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(match.group(1)) * {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}[match.group(2)]


def _lines(room: int) -> bytes:
    """`room` bytes of base64 text in 76-character CRLF lines, ending with CRLF."""
    encoded = base64.encodebytes(os.urandom(room * 3 // 4 + 3)).replace(b"\n", b"\r\n")
    body = encoded[:room - 2] + b"\r\n"
    if body[-3:-2] == b"\r":  # a cut between CR and LF would leave a lone CR
        body = body[:-3] + b"A\r\n"
    return body


def large_message(size: int, shape: str = "multipart") -> bytes:
    """A message of exactly `size` bytes (at least about 1 KiB).

    shape "multipart": multipart/mixed, a text part saying "needle", then a base64
    attachment of random bytes in 76-character lines; "single": one text/plain 7bit body
    saying "needle" on its first line, then 76-character lines of base64 text.
    """
    boundary = f"b-{uuid.uuid4().hex}"
    head = (f"From: Sender <sender@bench.example>\r\nTo: rcpt@bench.test\r\n"
            f"Subject: a large message\r\nMessage-ID: <{uuid.uuid4().hex}@bench.example>\r\n"
            f"MIME-Version: 1.0\r\n")
    if shape == "single":
        head += "Content-Type: text/plain; charset=us-ascii\r\n\r\nThe needle.\r\n"
        tail = ""
    else:
        head += (f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
                 f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                 f"The attachment holds the needle.\r\n"
                 f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                 f"Content-Transfer-Encoding: base64\r\n"
                 f"Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n")
        tail = f"--{boundary}--\r\n"
    room = size - len(head) - len(tail)
    if room < 2:
        raise SystemExit(f"--size must be at least {len(head) + len(tail) + 2}")
    message = head.encode() + _lines(room) + tail.encode()
    assert len(message) == size
    return message


def run_cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> bytes:
    """Run `mda ARGS`; exit with its error output when it fails; return its stdout."""
    proc = subprocess.run([MDA, *args], env=env, input=stdin, capture_output=True)
    if proc.returncode != 0:
        sys.exit(f"mda {' '.join(args)} failed: {proc.stderr.decode().strip()}")
    return proc.stdout


def read_back(env: dict[str, str], workdir: Path, address: str, mailbox: str,
              uid: int) -> tuple[bytes, int]:
    """`mda message show ADDRESS MAILBOX UID`: its output and its peak RSS in KiB (VmHWM
    polled until it exits: its rusage would count the benchmark's own pages, which the
    child had until exec)."""
    out = workdir / "shown.eml"
    peak = 0
    with out.open("wb") as sink:
        proc = subprocess.Popen([MDA, "message", "show", address, mailbox, str(uid)],
                                env=env, stdout=sink, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            try:  # before exec the child is still a copy of this process: not counted
                started = b"message\0show" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            except OSError:
                started = False
            if started:
                peak = max(peak, status_kib(proc.pid, "VmHWM") or 0)
            time.sleep(0.001)
    if proc.returncode != 0:
        sys.exit(f"mda message show failed with exit status {proc.returncode}")
    data = out.read_bytes()
    out.unlink()
    return data, peak


@contextmanager
def database(url: str | None, workdir: Path) -> Iterator[str]:
    """The database to use: a SQLite file in `workdir`, or a new PostgreSQL database on the
    server of `url`, dropped on exit."""
    if url is None or not url.startswith("postgresql"):
        yield url or f"sqlite+aiosqlite:///{workdir / 'large.sqlite3'}"
        return
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(url)
    name = f"mda_large_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def status_kib(pid: int, field: str) -> int | None:
    """A `Vm*` field of /proc/<pid>/status in KiB, or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) if match else None


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0); False when refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Sampler:
    """Samples VmRSS of a process every 2 ms in a thread; `peak` is the highest (KiB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = status_kib(self.pid, "VmRSS")
            if value is not None:
                self.peak = max(self.peak, value)
            time.sleep(0.002)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_server(env: dict[str, str], workdir: Path) -> tuple[subprocess.Popen, str, int]:
    """Start `mda serve` on a free port; return (process, host, port) once it accepts
    connections. Its log goes to `workdir/serve.log`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host, port = probe.getsockname()
    log = workdir / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([MDA, "serve"], env={**env, "MDA_LMTP_LISTEN": f"{host}:{port}"},
                                cwd=workdir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return proc, host, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("mda serve did not start:\n" + log.read_text(errors="replace"))


async def deliver(host: str, port: int, recipients: list[str], message: bytes
                  ) -> tuple[list[str], float, float]:
    """One DATA transaction; returns (reply statuses, seconds from the first byte of DATA
    to the last reply, seconds from the final "." to the last reply)."""
    client = await LMTPClient.connect(host, port)
    try:
        await client.lhlo("bench.client")
        await client.send(b"".join(f"{line}\r\n".encode() for line in [
            "MAIL FROM:<sender@bench.example>", *(f"RCPT TO:<{r}>" for r in recipients),
            "DATA"]))
        replies = await client.read_replies(len(recipients) + 2, timeout=60)
        if replies[-1].code != 354:
            sys.exit(f"the server refused the transaction: {replies}")
        wire = dot_stuff(message)
        started = time.perf_counter()
        await client.send(wire)
        sent = time.perf_counter()
        del wire
        after = await client.read_replies(len(recipients), timeout=600)
        done = time.perf_counter()
        await client.quit()
    finally:
        await client.close()
    return [reply.status for reply in after], done - started, done - sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=50 * MIB,
                        help="message size: bytes, or with K, M, G (default 50M)")
    parser.add_argument("--recipients", type=int, default=1, help="recipients (default 1)")
    parser.add_argument("--sieve", choices=sorted(SCRIPTS), default="none",
                        help="the recipients' active Sieve script (default none)")
    parser.add_argument("--shape", choices=["multipart", "single"], default="multipart",
                        help="multipart/mixed with a text part and a large base64 "
                             "attachment, or one large text/plain part (default multipart)")
    parser.add_argument("--line-endings", choices=["crlf", "lf"], default="crlf",
                        help="send the message with CRLF (as MTAs do) or bare LF line "
                             "endings, which mda rewrites to CRLF (default crlf)")
    parser.add_argument("--database-url", default=None,
                        help="default: a temporary SQLite file; a PostgreSQL URL names the "
                             "server (a database is created there and dropped)")
    args = parser.parse_args()

    stored = large_message(args.size, args.shape)  # what mda stores: CRLF line endings
    digest = hashlib.sha256(stored).hexdigest()
    message = stored if args.line_endings == "crlf" else stored.replace(b"\r\n", b"\n")
    with tempfile.TemporaryDirectory(prefix="mda-large-") as tmp, \
            database(args.database_url, Path(tmp)) as url:
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MDA_")}
        env.update({"MDA_DATABASE_URL": url, "MDA_HOSTNAME": "bench.test",
                    "MDA_MANAGESIEVE_LISTEN": "", "MDA_HTTP_LISTEN": "",
                    "MDA_LOG_LEVEL": "INFO", "MDA_SIEVE_SCRIPTS_DIR": str(workdir / "sieve"),
                    "MDA_MAX_MESSAGE_SIZE": str(args.size + MIB)})
        run_cli(env, "db", "upgrade")
        recipients = [f"r{n}@bench.test" for n in range(args.recipients)]
        script = SCRIPTS[args.sieve]
        if script is not None:
            (workdir / "bench.sieve").write_text(script)
        for rcpt in recipients:
            run_cli(env, "user", "add", rcpt, "--quota-storage", str(4 * args.size + MIB))
            if script is not None:
                run_cli(env, "sieve", "put", rcpt, "bench", str(workdir / "bench.sieve"),
                        "--activate")
        proc, host, port = start_server(env, workdir)
        try:
            warm, _, _ = asyncio.run(deliver(host, port, recipients, large_message(4096, args.shape)))
            time.sleep(0.5)
            baseline = status_kib(proc.pid, "VmRSS") or 0
            hwm_reset = reset_peak(proc.pid)
            with Sampler(proc.pid) as sampler:
                statuses, total, after_dot = asyncio.run(
                    deliver(host, port, recipients, message))
            peak = (status_kib(proc.pid, "VmHWM") or 0) if hwm_reset else sampler.peak
            after = status_kib(proc.pid, "VmRSS") or 0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if set(warm + statuses) != {"250 2.0.0"}:
            print(f"replies: warm-up {warm}, large {statuses}", file=sys.stderr)
            return 1
        listing = json.loads(run_cli(env, "message", "list", recipients[0], "--json"))
        largest = max(listing, key=lambda m: m["size"])
        shown, show_peak = read_back(env, workdir, recipients[0], largest["mailbox"],
                                     largest["uid"])
        # what is shown is the header prefix mda added, then the message as received
        same = hashlib.sha256(shown[len(shown) - len(stored):]).hexdigest() == digest

    size_mib = len(message) / MIB
    delta = (peak - baseline) / 1024
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"backend              {backend}")
    print(f"message              {len(message)} bytes ({size_mib:.1f} MiB), "
          f"{args.shape}, {args.line_endings.upper()} line endings, "
          f"{args.recipients} recipient(s), "
          f"Sieve script: {args.sieve}")
    print(f"replies              {', '.join(statuses)}")
    print(f"baseline RSS         {baseline / 1024:.1f} MiB")
    print(f"peak RSS             {peak / 1024:.1f} MiB"
          + ("" if hwm_reset else " (sampled VmRSS: VmHWM could not be reset)"))
    print(f"peak - baseline      {delta:.1f} MiB = {delta / size_mib:.2f} x message size")
    print(f"RSS after            {after / 1024:.1f} MiB")
    print(f"DATA to last reply   {total:.2f} s")
    print(f"final '.' to reply   {after_dot:.2f} s")
    print(f"read back            {'identical (SHA-256)' if same else 'DIFFERENT'}; "
          f"`mda message show` peak RSS "
          f"{show_peak / 1024:.1f} MiB")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
