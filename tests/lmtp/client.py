"""A tiny asyncio LMTP client for tests and benchmarks.

Python's `smtplib.LMTP` reads a single reply after DATA; RFC 2033 §4.2 gives one per
accepted recipient, so this client reads exactly that many, after DATA or after the last
BDAT chunk (RFC 3030). It also sends raw bytes for protocol tests that need to control every
octet, and can switch to TLS (STARTTLS, RFC 3207).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)\r\n\Z", re.S)


@dataclass(frozen=True)
class ServerReply:
    """One reply (possibly multi-line) as received.

    Attributes:
        code: the three-digit reply code.
        lines: the text of every line, without code and separator.
    """

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The text of the last line (for single-line replies, the whole text)."""
        return self.lines[-1]

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code of the last line, if any."""
        first = self.text.split(" ", 1)[0]
        return first if re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", first) else None

    @property
    def status(self) -> str:
        """`"<code> <enhanced>"` (e.g. `"250 2.1.5"`), or just the code."""
        return f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)


@dataclass
class TransactionResult:
    """What the server answered to one mail transaction.

    Attributes:
        mail: the MAIL reply.
        rcpt: the RCPT replies, in order.
        data: the DATA reply (354 when the message was sent), or the failure.
        chunks: with BDAT, the replies to the chunks before the last one, in order.
        after_data: one reply per accepted recipient, in RCPT order (empty if DATA failed),
            after the final "." or after the LAST chunk.
    """

    mail: ServerReply
    rcpt: list[ServerReply] = field(default_factory=list)
    data: ServerReply | None = None
    chunks: list[ServerReply] = field(default_factory=list)
    after_data: list[ServerReply] = field(default_factory=list)


def dot_stuff(message: bytes) -> bytes:
    """Encode message text for DATA (RFC 5321 §4.5.2): CRLF-terminate the last line, add a
    dot to every line starting with one (lines end at CRLF only, as on the wire) and append
    the terminating `.` line."""
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    if not message:
        return b".\r\n"
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line
                         for line in lines) + b".\r\n"


def bdat_chunk(chunk: bytes, last: bool = False) -> bytes:
    """One BDAT command with its chunk, as sent (RFC 3030 §2): the octets as they are."""
    return b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk


def split_chunks(message: bytes, count: int) -> list[bytes]:
    """Cut `message` into `count` chunks of nearly equal size (the last may be empty)."""
    step = -(-len(message) // count) if message else 0
    return [message[i * step:(i + 1) * step] for i in range(count)]


class LMTPClient:
    """One LMTP connection.

    Use `await LMTPClient.connect(...)`, then `lhlo()`, `transaction(...)`, `quit()`.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str | None = None, port: int | None = None, *,
                      path: str | Path | None = None, timeout: float = 30) -> LMTPClient:
        """Connect over TCP (`host`, `port`) or to a unix-domain socket (`path`) and read
        the greeting (which must be 220)."""
        if path is not None:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(path)), timeout)
        else:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), timeout)
        client = cls(reader, writer)
        greeting = await client.read_reply(timeout)
        if greeting.code != 220:
            raise AssertionError(f"unexpected greeting {greeting}")
        return client

    async def read_reply(self, timeout: float = 30) -> ServerReply:
        """Read one complete reply (all continuation lines).

        Raises:
            ConnectionError: the server closed the connection first.
            AssertionError: a line is not a well-formed reply line.
        """
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                raise ConnectionError(f"connection closed; got so far {lines!r}")
            match = _REPLY_LINE.match(raw)
            if match is None:
                raise AssertionError(f"malformed reply line {raw!r}")
            lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) == b" ":
                return ServerReply(int(match.group(1)), tuple(lines))

    async def read_replies(self, count: int, timeout: float = 30) -> list[ServerReply]:
        """Read `count` replies."""
        return [await self.read_reply(timeout) for _ in range(count)]

    async def send(self, raw: bytes) -> None:
        """Send raw bytes as they are."""
        self.writer.write(raw)
        await self.writer.drain()

    async def command(self, line: str | bytes, timeout: float = 30) -> ServerReply:
        """Send one command line (CRLF appended) and read its reply."""
        await self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return await self.read_reply(timeout)

    async def lhlo(self, name: str = "client.example") -> ServerReply:
        """LHLO; returns the (multi-line) reply."""
        return await self.command(f"LHLO {name}")

    async def transaction(self, mail_from: str, recipients: Sequence[str], message: bytes,
                          *, mail_params: str = "", timeout: float = 60) -> TransactionResult:
        """One mail transaction, pipelined (RFC 2920): MAIL, every RCPT and DATA in one
        write, then the message, then one reply per accepted recipient.

        Args:
            mail_from: the envelope sender ("" for the null sender `<>`).
            recipients: envelope recipients.
            message: the message text (not yet dot-stuffed).
            mail_params: extra MAIL parameters, e.g. "SIZE=1000".
        """
        mail = f"MAIL FROM:<{mail_from}>" + (f" {mail_params}" if mail_params else "")
        commands = [mail, *(f"RCPT TO:<{rcpt}>" for rcpt in recipients), "DATA"]
        await self.send("".join(f"{c}\r\n" for c in commands).encode())
        result = TransactionResult(mail=await self.read_reply(timeout))
        result.rcpt = await self.read_replies(len(recipients), timeout)
        result.data = await self.read_reply(timeout)
        if result.data.code != 354:
            return result
        await self.send(dot_stuff(message))
        accepted = sum(1 for reply in result.rcpt if reply.code == 250)
        result.after_data = await self.read_replies(accepted, timeout)
        return result

    async def bdat_transaction(self, mail_from: str, recipients: Sequence[str],
                               chunks: Sequence[bytes], *, mail_params: str = "",
                               pipelined: bool = True, timeout: float = 60
                               ) -> TransactionResult:
        """One mail transaction whose message goes in BDAT chunks (RFC 3030), the last one
        marked LAST.

        Args:
            mail_from: the envelope sender ("" for the null sender `<>`).
            recipients: envelope recipients.
            chunks: the message text in pieces, sent as they are (no dot-stuffing); at
                least one.
            mail_params: extra MAIL parameters, e.g. "SMTPUTF8".
            pipelined: send everything in one write and read the replies afterwards
                (RFC 2920), or wait for each reply before the next command.

        Returns:
            MAIL and RCPT replies, one reply per chunk but the last in `chunks`, and one reply
            per accepted recipient in `after_data` (after the LAST chunk), or there the one
            refusal of the LAST chunk when no RCPT was accepted.
        """
        assert chunks, "at least one chunk"
        mail = f"MAIL FROM:<{mail_from}>" + (f" {mail_params}" if mail_params else "")
        envelope = [f"{c}\r\n".encode() for c in
                    [mail, *(f"RCPT TO:<{rcpt}>" for rcpt in recipients)]]
        commands = [bdat_chunk(chunk, last=index == len(chunks) - 1)
                    for index, chunk in enumerate(chunks)]
        if pipelined:
            await self.send(b"".join(envelope + commands))
            result = TransactionResult(mail=await self.read_reply(timeout))
            result.rcpt = await self.read_replies(len(recipients), timeout)
        else:
            result = TransactionResult(mail=await self.command(envelope[0][:-2], timeout))
            result.rcpt = [await self.command(line[:-2], timeout) for line in envelope[1:]]
        for command in commands[:-1]:
            if not pipelined:
                await self.send(command)
            result.chunks.append(await self.read_reply(timeout))
        if not pipelined:
            await self.send(commands[-1])
        accepted = sum(1 for reply in result.rcpt if reply.code == 250)
        # Without an accepted RCPT the LAST chunk itself gets one reply (503).
        result.after_data = await self.read_replies(max(accepted, 1), timeout)
        return result

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> ServerReply:
        """STARTTLS (RFC 3207): send it, and on 220 do the TLS handshake on this connection.

        Returns:
            The STARTTLS reply (220 when TLS is now active).
        """
        reply = await self.command("STARTTLS")
        if reply.code == 220:
            await self.writer.start_tls(context, server_hostname=server_hostname)
        return reply

    async def quit(self) -> None:
        """QUIT and close."""
        try:
            await self.command("QUIT", timeout=5)
        except (ConnectionError, asyncio.TimeoutError, AssertionError):
            pass
        await self.close()

    async def close(self) -> None:
        """Close the connection without QUIT."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
