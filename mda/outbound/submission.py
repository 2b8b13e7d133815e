"""Handing mda's own messages (redirect, vacation reply, notification) to the MTA over SMTP.

`MDA_SUBMISSION_URL` names the MTA:

    smtp://HOST[:PORT]              plain SMTP, default port 25; no STARTTLS even if offered
    smtp+starttls://HOST[:PORT]     STARTTLS required (RFC 3207), default port 587
    smtps://HOST[:PORT]             TLS from the first byte (RFC 8314 §3.3), default port 465
    ...://USER:PASSWORD@HOST:PORT   AUTH with these credentials (percent-encoded in the URL)

Certificates are verified against the system's trust store (OpenSSL's default paths, which
`SSL_CERT_FILE` overrides) and the host name in the URL. IPv6 hosts go in brackets.

```python
submitter = Submitter(SubmissionTarget.parse(settings.submission_url),
                      timeout=settings.submission_timeout, hostname=settings.hostname)
deadline = asyncio.get_running_loop().time() + settings.submission_budget
async with submitter.connect(deadline=deadline) as connection:  # SubmissionError: unreachable
    await connection.send(outgoing)          # SubmissionError: refused, timed out
```

Time. Each SMTP step (connect with greeting, EHLO, STARTTLS, AUTH, MAIL, each RCPT, DATA,
QUIT) may take `timeout` seconds; with a `deadline` (the event loop's clock) no step runs
past it either, so a stalled MTA holds a caller for at most the time it had left. A session
cut short by the deadline or a timeout is closed without QUIT and is not usable again.

Every failure is a `SubmissionError` whose message says what the MTA answered or why it
could not be reached (never a password). It is `permanent` when the MTA answered 5xx to
the RCPT of every recipient it refused, or to DATA (RFC 5321 §4.2.1: "the SMTP client SHOULD
NOT repeat the exact request"): the message itself is refused. A 4xx reply, a timeout, a
lost connection, and any failure to connect, greet, start TLS or authenticate, or a refused
MAIL FROM (typically "530 5.7.0 Authentication required": a problem of the MTA or of mda's
settings, not of the message) are temporary. aiosmtplib is the SMTP client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import aiosmtplib

from mda.outbound.compose import OutgoingMessage

log = logging.getLogger("mda.outbound")

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


BUDGET_SPENT = "no answer within the time left for this transaction's submissions " \
    "(MDA_SUBMISSION_BUDGET)"


class SubmissionError(Exception):
    """A message could not be handed to the MTA: it is unreachable, timed out, or refused
    the sender, a recipient or the data. `str()` is one line for the log.

    Args and attributes:
        message: what happened, with the MTA's reply when it gave one.
        permanent: the MTA answered 5xx to RCPT or DATA (see the module docstring);
            False for everything that may work on a later try.
        accepted: recipients the MTA took while refusing the others permanently: the
            message went out to these. Empty when nothing was sent.
    """

    def __init__(self, message: str, *, permanent: bool = False,
                 accepted: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.accepted = accepted


@dataclass(frozen=True, slots=True)
class SubmissionTarget:
    """Where and how to submit, parsed from `MDA_SUBMISSION_URL`.

    Attributes:
        scheme: "smtp", "smtp+starttls" or "smtps".
        host: host name or IP address (IPv6 without brackets).
        port: TCP port.
        username, password: AUTH credentials, or None.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> SubmissionTarget:
        """Parse a submission URL (see the module docstring).

        Raises:
            ValueError: unknown scheme, no host, a bad port, or a path/query/fragment;
                the message names the problem and never repeats a password.
        """
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a submission URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise ValueError(f"unknown scheme {parts.scheme + ':' if parts.scheme else 'none'}; "
                             "use smtp://, smtp+starttls:// or smtps://HOST[:PORT]")
        if not parts.hostname:
            raise ValueError("the submission URL names no host (smtp://HOST[:PORT])")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("the submission URL takes no path, query or fragment")
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        if (username is None) != (password is None):
            raise ValueError("give both user and password in the submission URL, or neither")
        return cls(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, password)

    def __str__(self) -> str:
        """The URL without the password, for logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{host}:{self.port}"


@asynccontextmanager
async def _within(deadline: float | None, target: SubmissionTarget) -> AsyncIterator[None]:
    """Cut the body short at `deadline` (event loop clock; None = no limit).

    Raises:
        SubmissionError: the deadline passed first (temporary).
    """
    if deadline is None:
        yield
        return
    timeout = asyncio.timeout_at(deadline)
    try:
        async with timeout:
            yield
    except TimeoutError:
        if not timeout.expired():
            raise
        raise SubmissionError(f"{target}: {BUDGET_SPENT}") from None


class SubmissionConnection:
    """One open SMTP session; `send` may be called several times while `usable`.

    Args:
        smtp: the connected client.
        target: where it is connected, for messages.
        timeout: seconds each step may take.
        deadline: no step runs past this (event loop clock); None = no limit.
    """

    def __init__(self, smtp: aiosmtplib.SMTP, target: SubmissionTarget, *,
                 timeout: float, deadline: float | None = None) -> None:
        self._smtp = smtp
        self._target = target
        self._timeout = timeout
        self._deadline = deadline
        self._broken = False

    @property
    def usable(self) -> bool:
        """False once the session was lost, timed out or cut short by the deadline."""
        return not self._broken and self._smtp.is_connected

    async def close(self) -> None:
        """QUIT (within the step timeout and the deadline), or just drop the connection
        when it is not usable or the MTA does not answer in time. Never raises."""
        if not self.usable:
            self._smtp.close()
            return
        try:
            async with _within(self._deadline, self._target):
                await self._smtp.quit()
        except (SubmissionError, aiosmtplib.SMTPException, OSError):
            self._smtp.close()

    async def send(self, message: OutgoingMessage) -> None:
        """Send one message: MAIL FROM, RCPT TO for each recipient, DATA.

        `BODY=8BITMIME` is given when the data has 8-bit bytes and the MTA offers it, and
        `SMTPUTF8` when an address is not ASCII (RFC 6531 §3.4).

        Raises:
            SubmissionError: the MTA refused the sender, any recipient or the data
                (`permanent` for 5xx to RCPT or DATA; `accepted` names the recipients it took when it
                refused the others with 5xx), or the session failed (disconnect, timeout,
                deadline: the connection is then not `usable`). Nothing is retried here.
        """
        options = []
        if any(byte >= 0x80 for byte in message.data) and \
                self._smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if not all(address.isascii() for address in (message.sender, *message.recipients)):
            options.append("SMTPUTF8")
        try:
            async with _within(self._deadline, self._target):
                refused, _ = await self._smtp.sendmail(
                    message.sender, list(message.recipients), message.data,
                    mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise SubmissionError(
                f"{self._target} refused every recipient: "
                f"{_describe_refusals(exc.recipients)}",
                permanent=all(_permanent(getattr(item, "code", 0)) for item in exc.recipients)
            ) from None
        except aiosmtplib.SMTPResponseException as exc:  # MAIL FROM: the settings, for now
            raise SubmissionError(f"{self._target} answered {exc.code} {_one_line(exc.message)}",
                                  permanent=isinstance(exc, aiosmtplib.SMTPDataError)
                                  and _permanent(exc.code)) from None
        except (SubmissionError, aiosmtplib.SMTPException, OSError) as exc:
            self._broken = True
            self._smtp.close()
            if isinstance(exc, SubmissionError):
                raise
            raise SubmissionError(f"{self._target}: {_one_line(str(exc)) or type(exc).__name__}"
                                  ) from None
        if refused:  # some recipients were taken (see mda.delivery.outbound)
            listed = ", ".join(f"<{rcpt}> ({reply.code} {_one_line(reply.message)})"
                               for rcpt, reply in refused.items())
            permanent = all(_permanent(reply.code) for reply in refused.values())
            accepted = tuple(r for r in message.recipients if r not in refused)
            raise SubmissionError(f"{self._target} refused {listed}", permanent=permanent,
                                  accepted=accepted if permanent else ())


class Submitter:
    """Opens SMTP sessions to the MTA named by a `SubmissionTarget`.

    Args:
        target: where to submit.
        timeout: seconds each SMTP step (connect, every command, the data) may take.
        hostname: our name in EHLO (`MDA_HOSTNAME`).
    """

    def __init__(self, target: SubmissionTarget, *, timeout: float, hostname: str) -> None:
        self.target = target
        self.timeout = timeout
        self.hostname = hostname

    async def open(self, *, deadline: float | None = None) -> SubmissionConnection:
        """Connect, greet (EHLO), start TLS and authenticate as the URL says; the caller
        closes the connection (`SubmissionConnection.close`).

        Args:
            deadline: no step of this session runs past it (event loop clock, as
                `asyncio.get_running_loop().time()`); None = only the step timeout.

        Raises:
            SubmissionError: the MTA cannot be reached, TLS or AUTH failed, it timed out or
                the deadline passed (always temporary, see the module docstring).
        """
        smtp = aiosmtplib.SMTP(
            hostname=self.target.host, port=self.target.port, timeout=self.timeout,
            local_hostname=self.hostname, use_tls=self.target.scheme == "smtps",
            start_tls=self.target.scheme == "smtp+starttls", username=self.target.username,
            password=self.target.password)
        try:
            async with _within(deadline, self.target):
                await smtp.connect()
                if smtp.is_ehlo_or_helo_needed:  # learn the extensions before the first MAIL
                    await smtp.ehlo()
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            raise SubmissionError(f"{self.target} answered {exc.code} {_one_line(exc.message)}"
                                  ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise SubmissionError(f"cannot reach {self.target}: "
                                  f"{_one_line(str(exc)) or type(exc).__name__}") from None
        except SubmissionError:
            smtp.close()
            raise
        return SubmissionConnection(smtp, self.target, timeout=self.timeout, deadline=deadline)

    @asynccontextmanager
    async def connect(self, *, deadline: float | None = None
                      ) -> AsyncIterator[SubmissionConnection]:
        """`open`, and close on exit (QUIT, or a plain close when the session is broken).

        Raises:
            SubmissionError: as `open`.
        """
        connection = await self.open(deadline=deadline)
        try:
            yield connection
        finally:
            await connection.close()


def _permanent(code: int) -> bool:
    """A 5yz reply: "Permanent Negative Completion" (RFC 5321 §4.2.1)."""
    return 500 <= code <= 599


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe_refusals(refusals: list) -> str:
    parts = []
    for item in refusals:
        code = getattr(item, "code", "")
        parts.append(f"<{getattr(item, 'recipient', '?')}> ({code} "
                     f"{_one_line(getattr(item, 'message', ''))})")
    return ", ".join(parts)


__all__ = ["BUDGET_SPENT", "DEFAULT_PORTS", "SubmissionConnection", "SubmissionError", "SubmissionTarget",
           "Submitter"]
