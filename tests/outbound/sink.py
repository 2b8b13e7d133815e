"""A capture sink: a real SMTP server (aiosmtpd, in its own thread) that records every message
mda submits, and can be told to refuse recipients or the data.

```python
with CaptureSink() as sink:            # listens on 127.0.0.1:<free port>
    settings = {"MDA_SUBMISSION_URL": sink.url}
    ...
    [message] = sink.messages          # Captured(sender, recipients, data, mail_options)
```

`closed_port()` gives a port nothing listens on: an MTA that is down. `Tarpit` is an MTA
that accepts connections and never says a word (not even the greeting).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


closed_port = free_port  # nobody listens there once the probe socket is closed


@dataclass(frozen=True)
class Captured:
    """One message the sink accepted.

    Attributes:
        sender: MAIL FROM ("" for `<>`).
        recipients: RCPT TO addresses, in order.
        data: the message bytes as received (dot-unstuffed, CRLF).
        mail_options: the MAIL FROM parameters (e.g. `BODY=8BITMIME`).
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...]

    @property
    def message(self) -> EmailMessage:
        """The message parsed with the standard library (headers decoded)."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Handler:
    refuse: dict[str, str] = field(default_factory=dict)  # address -> reply
    fail_data: str | None = None
    messages: list[Captured] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail_data is not None:
            return self.fail_data
        with self.lock:
            sender = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
            self.messages.append(Captured(sender, tuple(envelope.rcpt_tos),
                                          envelope.original_content or envelope.content,
                                          tuple(envelope.mail_options)))
        return "250 2.0.0 queued by the test sink"


class CaptureSink:
    """The sink; a context manager that starts and stops the server.

    Args:
        tls_context: serve STARTTLS with this context (`smtp+starttls://`).
        implicit_tls: with `tls_context`, speak TLS from the first byte (`smtps://`).
        credentials: (user, password) the sink requires with AUTH before MAIL.
    """

    def __init__(self, *, tls_context: ssl.SSLContext | None = None,
                 implicit_tls: bool = False,
                 credentials: tuple[str, str] | None = None) -> None:
        self.handler = _Handler()
        self.port = free_port()
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": True}
        if credentials is not None:
            wanted = (credentials[0].encode(), credentials[1].encode())

            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                             auth_data: Any) -> AuthResult:
                given = (getattr(auth_data, "login", None), getattr(auth_data, "password", None))
                return AuthResult(success=given == wanted)

            kwargs.update(authenticator=authenticate, auth_required=True,
                          auth_require_tls=False)
        if tls_context is not None and implicit_tls:
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = True
        self.scheme = "smtps" if implicit_tls else "smtp+starttls" if tls_context else "smtp"
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     server_hostname="sink.test", **kwargs)

    @property
    def url(self) -> str:
        """The `MDA_SUBMISSION_URL` that reaches this sink."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Captured]:
        """The messages accepted so far (a copy)."""
        with self.handler.lock:
            return list(self.handler.messages)

    def refuse(self, *addresses: str, reply: str = "550 5.1.1 refused by the test sink"
               ) -> None:
        """Answer RCPT TO for these addresses with `reply` from now on (e.g. "450 4.2.0
        greylisted" for a temporary refusal)."""
        self.handler.refuse.update(dict.fromkeys(addresses, reply))

    def allow(self, *addresses: str) -> None:
        """Accept these addresses again."""
        for address in addresses:
            self.handler.refuse.pop(address, None)

    def fail_data(self, reply: str | None) -> None:
        """Answer every DATA with this reply (e.g. "451 4.3.0 try later"); None = accept."""
        self.handler.fail_data = reply

    def __enter__(self) -> CaptureSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class Tarpit:
    """A stalled MTA: a TCP listener on 127.0.0.1 in the test's event loop that accepts
    every connection and never answers. `async with Tarpit() as tarpit:`; `tarpit.url` is
    its `MDA_SUBMISSION_URL`, `tarpit.connections` counts the connections accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The `MDA_SUBMISSION_URL` that reaches the tarpit."""
        return f"smtp://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)  # held open, silent, until the tarpit closes

    async def __aenter__(self) -> Tarpit:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
