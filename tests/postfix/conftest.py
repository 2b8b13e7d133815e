"""A whole mail system for the Postfix integration tests: a private Postfix (see
`tests.postfix.instance`) in front of a real `mda serve`, mda's submission going back into
that Postfix, and a capture sink (a real SMTP server) standing for every other domain.

```python
def test_x(mda, mail_system):
    add_users(mda, "alice@example.test")
    system = mail_system(MDA_QUOTA_FULL_TEMPFAIL="true")   # extra mda settings
    system.send("sender@remote.test", ["alice@example.test"], message_bytes)
    system.wait_sent_to_mda("alice@example.test")         # Postfix's log says status=sent
    system.sink.messages                                   # what Postfix relayed out
```

The mda-facing `main.cf` lines and the address-map command are read from
`docs/postfix.md` (the blocks after `<!-- postfix-test: main.cf -->` and `<!-- postfix-test:
map -->`), so the documentation is exactly what is tested; only the domain, the ports and
the file locations are substituted. Users must exist before `mail_system(...)` is called:
the map is built from `mda user list` at start.
"""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import IN_CI, MDA_BIN, ROOT
from tests.e2e.conftest import ServerProcess, start_server  # noqa: F401  (mda serve fixture)
from tests.outbound.sink import CaptureSink
from tests.postfix.instance import PostfixInstance, postfix_unavailable

DOC = ROOT / "docs" / "postfix.md"
DOMAIN = "example.test"
SENDER = "sender@remote.test"


def doc_block(marker: str) -> str:
    """The fenced block that follows `<!-- postfix-test: MARKER -->` in docs/postfix.md.

    Raises:
        AssertionError: no such marker, or no fenced block right after it.
    """
    match = re.search(rf"<!-- postfix-test: {re.escape(marker)} -->\n```[a-z]*\n(.*?)\n```",
                      DOC.read_text(), re.S)
    assert match, f"docs/postfix.md has no block marked postfix-test: {marker}"
    return match.group(1)


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace each key by its value; every key must occur (the doc must not drift)."""
    for old, new in replacements.items():
        assert old in text, f"{old!r} no longer appears in the docs/postfix.md block"
        text = text.replace(old, new)
    return text


@dataclass
class MailSystem:
    """Postfix in front of mda, with the sink behind.

    Attributes:
        postfix: the private Postfix; its smtpd takes inbound mail and mda's submissions.
        mda: the `mda serve` process.
        sink: the capture sink that every non-local domain is relayed to.
    """

    postfix: PostfixInstance
    mda: ServerProcess
    sink: CaptureSink

    def send(self, sender: str, recipients: list[str], message: bytes) -> dict:
        """Send one message to Postfix's smtpd over SMTP.

        Returns:
            The recipients Postfix refused at RCPT: {address: (code, text)}.

        Raises:
            smtplib.SMTPException: Postfix refused the sender, every recipient or the data.
        """
        with smtplib.SMTP("127.0.0.1", self.postfix.smtpd_port, local_hostname="client.test",
                          timeout=120) as smtp:
            return smtp.sendmail(sender, recipients, message)

    def wait_sent_to_mda(self, address: str, status: str = "sent", count: int = 1,
                         timeout: float = 90) -> list[str]:
        """Wait for `count` Postfix log lines saying mail to `address` was handed to mda's
        LMTP listener with this status (`sent`, `bounced`, `deferred`)."""
        relay = ("postfix.test[private/mda]" if self.mda.where.startswith("unix:")
                 else f"127.0.0.1[127.0.0.1]:{self.mda.port}")
        return self.postfix.wait_for_log(
            rf"postfix/lmtp\[.*to=<{re.escape(address)}>.*relay={re.escape(relay)},"
            rf".* status={status} ", count=count, timeout=timeout)

    def wait_sink(self, count: int, timeout: float = 20) -> list:
        """Wait until the sink holds `count` messages; return them all.

        Raises:
            AssertionError: fewer arrived in time (the Postfix log is in the message).
        """
        deadline = time.monotonic() + timeout
        while len(self.sink.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.sink.messages)} of {count} messages at the "
                                     f"sink:\n{self.postfix.diagnostics()}")
            time.sleep(0.05)
        return self.sink.messages


def build_address_map(config_dir: Path, env: dict[str, str]) -> Path:
    """Run the doc's map command with its files in `config_dir` (`MAIL_CONFIG` points
    `postmap` at that instance's main.cf); return the map file."""
    command = substitute(doc_block("map"), {"/etc/postfix": str(config_dir)})
    path = os.pathsep.join([str(Path(MDA_BIN).parent), env.get("PATH", ""), "/usr/sbin"])
    proc = subprocess.run(["sh", "-c", command], env={**env, "PATH": path, "MAIL_CONFIG": str(config_dir)},
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    return config_dir / "mda_mailboxes"


def postfix_missing(reason: str) -> NoReturn:
    """Skip the calling test because Postfix (or a part of it) cannot run here, or fail it
    under CI=true, where .ci/run should have made it available.

    Raises:
        pytest.skip.Exception / pytest.fail.Exception: always.
    """
    if IN_CI:
        pytest.fail(f"{reason}; .ci/run should have made Postfix available")
    pytest.skip(reason)


def require_postfix() -> None:
    """Return when a private Postfix can run here; else `postfix_missing` (not installed,
    not root)."""
    reason = postfix_unavailable()
    if reason is not None:
        postfix_missing(reason)


@pytest.fixture
def mail_system(start_server, mda_env: dict[str, str]) -> Iterator[Callable[..., MailSystem]]:
    """Start sink, mda and Postfix; `mail_system(**mda_settings)` returns the `MailSystem`.

    Keywords: `postfix_settings` adds `main.cf` lines after the documented ones;
    `lmtp_socket=True` has mda listen on `private/mda` in Postfix's queue directory and
    `virtual_transport = lmtp:unix:private/mda` (the doc's UNIX-socket variant). Postfix
    stops at teardown with every process of it gone (then mda, then the sink). Skips when
    Postfix cannot run here (not installed, not root), except under CI=true, where it fails.
    """
    require_postfix()
    started: list[tuple[PostfixInstance, CaptureSink]] = []

    def start(postfix_settings: str = "", lmtp_socket: bool = False,
              **mda_settings: str) -> MailSystem:
        sink = CaptureSink().__enter__()
        try:
            postfix = PostfixInstance.create()
        except BaseException:
            sink.__exit__(None, None, None)
            raise
        started.append((postfix, sink))
        if lmtp_socket:
            mda_settings["MDA_LMTP_LISTEN"] = f"unix:{postfix.queue_dir}/private/mda"
        mda = start_server(MDA_SUBMISSION_URL=f"smtp://127.0.0.1:{postfix.smtpd_port}",
                           **mda_settings)
        settings = substitute(doc_block("main.cf"), {
            "example.org": DOMAIN,
            "/etc/postfix": str(postfix.config_dir),
            "lmtp:inet:127.0.0.1:2424":
                "lmtp:unix:private/mda" if lmtp_socket else f"lmtp:inet:{mda.where}",
        })
        postfix.configure("\n".join([settings, f"relayhost = [127.0.0.1]:{sink.port}",
                                     postfix_settings]))
        build_address_map(postfix.config_dir, mda_env)
        postfix.start()
        return MailSystem(postfix, mda, sink)

    yield start
    for postfix, sink in started:
        try:
            postfix.stop()
        finally:
            sink.__exit__(None, None, None)
