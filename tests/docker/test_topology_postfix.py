"""The compose topology without containers, whole: PostgreSQL, two `mda serve` processes on
one database, and Postfix in front of them configured as docker/mta configures the `mta`
service.

- A fresh PostgreSQL database; both mda processes start on it at once and migrate it at
  start, as the compose `mda` service does (no `mda db upgrade` first). Their settings are
  the `mda` service's environment from docker-compose.yml, with only the listening
  addresses, the database URL and the submission URL (Postfix's smtpd) changed.
- Postfix's main.cf is docker/mta/main.cf with only paths and addresses changed, completed
  by the real docker/mta/entrypoint.sh (myhostname, virtual_mailbox_domains and the pgsql
  map file from the MTA_* variables), so addresses are checked against mda's `users` table
  with the image's own query. The test adds three lines: a transport map sending the second
  domain to the second mda process (one domain per mda process), a relayhost (the capture
  sink stands for the rest of the Internet) and a mail log file instead of /dev/stdout.
- One SMTP message to users of both mda processes, an unknown address, an over-quota user,
  an address Postfix's map knows but mda does not (a case difference in the local part), and
  a user whose Sieve script redirects to a user of the other mda process: the redirect goes
  out through Postfix (MDA_SUBMISSION_URL) and comes back in to the other mda.

Needs Postfix as root with the pgsql map type (Debian package postfix-pgsql); skipped
otherwise, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.docker.test_static import COMPOSE_FILE, MTA_DIR, interpolate
from tests.e2e.conftest import ServerProcess, launch_server, stop_servers
from tests.e2e.test_lmtp_extensions import cli_json
from tests.outbound.sink import CaptureSink
from tests.postfix.conftest import postfix_missing, require_postfix, substitute
from tests.postfix.instance import PostfixInstance
from tests.postfix.test_postfix import dsn_recipients

POSTFIX_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

Run = Callable[..., subprocess.CompletedProcess[bytes]]

SENDER = "sender@remote.test"
DOMAIN_A, DOMAIN_B = "example.org", "example.net"  # served by the first, second mda process
ALICE, FULL, FWD, NOBODY = (f"{name}@{DOMAIN_A}" for name in ("alice", "full", "fwd", "nobody"))
BOB, CAROL, DAVE = (f"{name}@{DOMAIN_B}" for name in ("bob", "carol", "Dave"))
DAVE_LOWER = DAVE.lower()  # Postfix's map matches it (lower-cased), mda does not
SUBJECT = "topology through Postfix"
MESSAGE = (f"From: {SENDER}\r\nTo: {ALICE}, {BOB}\r\nSubject: {SUBJECT}\r\n"
           f"Message-ID: <topology-postfix@remote.test>\r\n\r\n").encode() + b"body\r\n" * 40


def compose_mda_environment() -> dict[str, str]:
    """The `mda` service's environment in docker-compose.yml, `${VAR:-default}` filled in."""
    services = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))["services"]
    return {key: str(value) for key, value in services["mda"]["environment"].items()}


def mda_settings(database_url: str, smtpd_port: int) -> dict[str, str]:
    """The compose `mda` settings for a process on this machine: every listener on
    127.0.0.1 at a port the system picks, this database, this Postfix's smtpd."""
    settings = compose_mda_environment()
    here = {"MDA_DATABASE_URL": database_url,
            "MDA_SUBMISSION_URL": f"smtp://127.0.0.1:{smtpd_port}",
            "MDA_LMTP_LISTEN": "127.0.0.1:0", "MDA_MANAGESIEVE_LISTEN": "127.0.0.1:0",
            "MDA_HTTP_LISTEN": "127.0.0.1:0"}
    assert set(here) <= set(settings), "docker-compose.yml no longer sets these for mda"
    return {**settings, **here}


def start_both(env: dict[str, str], tmp_path: Path) -> list[ServerProcess]:
    """Start two `mda serve` processes at the same moment (both migrate the empty database
    at start); return them once both listen."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(launch_server, env, tmp_path / name) for name in ("a", "b")]
        return [future.result() for future in futures]


def compose_main_cf(postfix: PostfixInstance, lmtp_port: int) -> str:
    """docker/mta/main.cf for this instance: its config directory instead of /etc/postfix,
    127.0.0.1 instead of every interface, its mail log instead of the container's stdout, and
    the first mda process's LMTP port instead of the `mda` service's."""
    return substitute((MTA_DIR / "main.cf").read_text(), {
        "/etc/postfix/": f"{postfix.config_dir}/",
        "inet_interfaces = all": "inet_interfaces = 127.0.0.1",
        "maillog_file = /dev/stdout": f"maillog_file = {postfix.maillog}",
        "lmtp:inet:mda:24": f"lmtp:inet:127.0.0.1:{lmtp_port}",
    })


def run_entrypoint(postfix: PostfixInstance, database_url: str) -> None:
    """docker/mta/entrypoint.sh on this instance (MAIL_CONFIG), with `true` as the command
    and the MTA_* variables the compose `mta` service sets, naming the test's database.
    The image's Dockerfile puts pgsql-mailboxes.cf there as `.in`; so does this."""
    shutil.copy2(MTA_DIR / "pgsql-mailboxes.cf", postfix.config_dir / "pgsql-mailboxes.cf.in")
    url = make_url(database_url)
    env = {**os.environ,
           "PATH": POSTFIX_PATH,
           "MAIL_CONFIG": str(postfix.config_dir),
           "MTA_DOMAINS": f"{DOMAIN_A} {DOMAIN_B}",
           "MTA_DB_HOST": f"inet:{url.host}:{url.port or 5432}",
           "MTA_DB_NAME": url.database or "", "MTA_DB_USER": url.username or "",
           "MTA_DB_PASSWORD": url.password or ""}
    proc = subprocess.run(["sh", str(MTA_DIR / "entrypoint.sh"), "true"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Postfix re-reads a main.cf changed within the last second; date it in the past.
    past = time.time() - 60
    os.utime(postfix.config_dir / "main.cf", (past, past))


def map_types(postfix: PostfixInstance) -> set[str]:
    """The lookup table types this Postfix supports (`postconf -m`)."""
    proc = subprocess.run(["postconf", "-c", str(postfix.config_dir), "-m"],
                          env={**os.environ, "PATH": POSTFIX_PATH}, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


@pytest.fixture
def postfix() -> Iterator[PostfixInstance]:
    """A private Postfix, laid out but not configured; stopped (every process of it gone)
    at teardown."""
    require_postfix()
    instance = PostfixInstance.create()
    try:
        instance.configure("")
        if "pgsql" not in map_types(instance):
            postfix_missing("this Postfix has no pgsql map type (Debian package postfix-pgsql)")
        yield instance
    finally:
        instance.stop()


def lmtp_lines(postfix: PostfixInstance, address: str, port: int, status: str) -> list[str]:
    """Wait for Postfix's log line saying mail to `address` went over LMTP to the mda
    process on `port` with this status."""
    return postfix.wait_for_log(
        rf"postfix/lmtp\[.*to=<{re.escape(address)}>.*relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
        rf"{port},.* status={status} ", timeout=30)


def wait_queue_empty(postfix: PostfixInstance, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while postfix.queue():
        assert time.monotonic() < deadline, postfix.queue()
        time.sleep(0.05)


def recipients_logged(server: ServerProcess) -> set[str]:
    """The recipients `server` logged a result for (`rcpt=<...> result=...`)."""
    return set(re.findall(r"rcpt=<([^>]+)> result=", server.log_text()))


@pytest.mark.postgresql_only
def test_postfix_in_front_of_two_mda_processes_on_postgresql(
        mda: Run, database_url: str, postfix: PostfixInstance, tmp_path: Path) -> None:
    started = time.monotonic()
    with CaptureSink() as sink:
        servers = start_both(mda_settings(database_url, postfix.smtpd_port), tmp_path)
        try:
            first, second = servers
            for address in (ALICE, FWD, BOB, CAROL, DAVE):
                mda("user", "add", address, check=True)
            mda("user", "add", FULL, "--quota-storage", "100", check=True)
            script = tmp_path / "fwd.sieve"
            script.write_text(f'redirect "{CAROL}";\n')
            mda("sieve", "put", FWD, "fwd", str(script), "--activate", check=True)

            postfix.configure("\n".join([
                compose_main_cf(postfix, first.port),
                f"transport_maps = inline:{{ {DOMAIN_B}=lmtp:inet:127.0.0.1:{second.port} }}",
                f"relayhost = [127.0.0.1]:{sink.port}",
            ]))
            run_entrypoint(postfix, database_url)
            postfix.start()
            print(f"PostgreSQL, two mda processes and Postfix up in "
                  f"{time.monotonic() - started:.2f} s")

            with smtplib.SMTP("127.0.0.1", postfix.smtpd_port, local_hostname="client.test",
                              timeout=60) as smtp:
                refused = smtp.sendmail(SENDER, [ALICE, FULL, FWD, NOBODY, BOB, DAVE_LOWER],
                                        MESSAGE)
            # Unknown to mda's users table: refused by Postfix at RCPT, never queued.
            [(code, text)] = [refused.pop(NOBODY)]
            assert code == 550 and b"5.1.1" in text and b"User unknown" in text, text
            assert refused == {}

            for address, server, status in [(ALICE, first, "sent"), (FWD, first, "sent"),
                                             (FULL, first, "bounced"), (BOB, second, "sent"),
                                             (DAVE_LOWER, second, "bounced"),
                                             (CAROL, second, "sent")]:
                lmtp_lines(postfix, address, server.port, status)
            wait_queue_empty(postfix)
            delivered = time.monotonic()

            bounces = [m for m in sink.messages if m.sender == ""]
            assert bounces and len(bounces) == len(sink.messages), \
                [(m.sender, m.recipients) for m in sink.messages]
            failed: dict[str, tuple[str, str]] = {}
            for bounce in bounces:
                assert bounce.recipients == (SENDER,)
                failed.update(dsn_recipients(bounce))
            assert set(failed) == {FULL, DAVE_LOWER}
            assert failed[FULL][0] == "5.2.2" and failed[FULL][1].startswith("smtp; 552 5.2.2")
            assert failed[DAVE_LOWER][0] == "5.1.1" and \
                failed[DAVE_LOWER][1].startswith("smtp; 550 5.1.1")

            # Each mda process saw only its own domain's recipients, and logged them.
            assert recipients_logged(first) == {ALICE, FULL, FWD}
            assert recipients_logged(second) == {BOB, CAROL, DAVE_LOWER}
            assert first.wait_for_log(rf"rcpt=<{re.escape(ALICE)}> result=stored ")
            assert first.wait_for_log(rf"rcpt=<{re.escape(FULL)}> result=over_quota ")
            assert first.wait_for_log(rf"<{re.escape(FWD)}>: redirect to <{re.escape(CAROL)}>"
                                      rf" \(envelope from <[^>]*>\) sent")
            assert second.wait_for_log(rf"rcpt=<{re.escape(BOB)}> result=stored ")
            assert second.wait_for_log(rf"rcpt=<{re.escape(CAROL)}> result=stored ")
            assert second.wait_for_log(rf"rcpt=<{re.escape(DAVE_LOWER)}> result=unknown_user")

            # Stored once each, whichever process stored it.
            used = {user["address"]: user["messages_used"]
                    for user in cli_json(mda, "user", "list")}
            assert used == {ALICE: 1, BOB: 1, CAROL: 1, FWD: 0, FULL: 0, DAVE: 0}
            for address in (ALICE, BOB, CAROL):
                [copy] = cli_json(mda, "message", "list", address)
                assert copy["subject"] == SUBJECT and copy["mailbox"] == "INBOX"
            [redirected] = cli_json(mda, "message", "list", CAROL)
            shown = mda("message", "show", CAROL, "INBOX", str(redirected["uid"]),
                        check=True).stdout
            assert f"Delivered-To: {CAROL}".encode() in shown
            # In through Postfix twice: from the client, then from the first mda's redirect.
            assert len(re.findall(rb"^Received: from ", shown, re.M)) >= 2, shown[:2000]
            print(f"delivered, bounced and redirected in {delivered - started:.2f} s")
        finally:
            stop_servers(servers)
