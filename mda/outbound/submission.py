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
async with submitter.connect() as connection:     # SubmissionError: MTA unreachable
    await connection.send(outgoing)               # SubmissionError: refused, timed out
```

Every failure is a `SubmissionError` whose message says what the MTA answered or why it
could not be reached (never a password). aiosmtplib is the SMTP client.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import aiosmtplib

from mda.outbound.compose import OutgoingMessage

log = logging.getLogger("mda.outbound")

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class SubmissionError(Exception):
    """A message could not be handed to the MTA: it is unreachable, timed out, or refused
    the sender, a recipient or the data. The message is one line for the log."""


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


class SubmissionConnection:
    """One open SMTP session; `send` may be called several times."""

    def __init__(self, smtp: aiosmtplib.SMTP, target: SubmissionTarget) -> None:
        self._smtp = smtp
        self._target = target

    async def send(self, message: OutgoingMessage) -> None:
        """Send one message: MAIL FROM, RCPT TO for each recipient, DATA.

        `BODY=8BITMIME` is given when the data has 8-bit bytes and the MTA offers it, and
        `SMTPUTF8` when an address is not ASCII (RFC 6531 §3.4).

        Raises:
            SubmissionError: the MTA refused the sender, any recipient or the data, or the
                session failed (disconnect, timeout). Nothing is retried here.
        """
        options = []
        if any(byte >= 0x80 for byte in message.data) and \
                self._smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if not all(address.isascii() for address in (message.sender, *message.recipients)):
            options.append("SMTPUTF8")
        try:
            refused, _ = await self._smtp.sendmail(message.sender, list(message.recipients),
                                                   message.data, mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise SubmissionError(f"{self._target} refused every recipient: "
                                  f"{_describe_refusals(exc.recipients)}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SubmissionError(f"{self._target} answered {exc.code} {_one_line(exc.message)}"
                                  ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SubmissionError(f"{self._target}: {_one_line(str(exc)) or type(exc).__name__}"
                                  ) from None
        if refused:  # some recipients were taken: still a failure (see mda.delivery.outbound)
            listed = ", ".join(f"<{rcpt}> ({reply.code} {_one_line(reply.message)})"
                               for rcpt, reply in refused.items())
            raise SubmissionError(f"{self._target} refused {listed}")


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

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[SubmissionConnection]:
        """Connect, greet (EHLO), start TLS and authenticate as the URL says; QUIT on exit.

        Raises:
            SubmissionError: the MTA cannot be reached, TLS or AUTH failed, or it timed out.
        """
        smtp = aiosmtplib.SMTP(
            hostname=self.target.host, port=self.target.port, timeout=self.timeout,
            local_hostname=self.hostname, use_tls=self.target.scheme == "smtps",
            start_tls=self.target.scheme == "smtp+starttls", username=self.target.username,
            password=self.target.password)
        try:
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
        try:
            yield SubmissionConnection(smtp, self.target)
        finally:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe_refusals(refusals: list) -> str:
    parts = []
    for item in refusals:
        code = getattr(item, "code", "")
        parts.append(f"<{getattr(item, 'recipient', '?')}> ({code} "
                     f"{_one_line(getattr(item, 'message', ''))})")
    return ", ".join(parts)


__all__ = ["DEFAULT_PORTS", "SubmissionConnection", "SubmissionError", "SubmissionTarget",
           "Submitter"]
