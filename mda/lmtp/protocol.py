"""The LMTP server protocol (RFC 2033): aiosmtpd's `LMTP` class with what mda needs fixed.

What this subclass changes, and why:

- LHLO advertises PIPELINING (RFC 2033 §4.1 and RFC 2920: LMTP servers are expected to
  support it), ENHANCEDSTATUSCODES (RFC 2034), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
  CHUNKING (RFC 3030), `SIZE <limit>` (RFC 1870) and, when a certificate is configured and
  TLS is not active yet, STARTTLS (RFC 3207). aiosmtpd lacks PIPELINING,
  ENHANCEDSTATUSCODES and BDAT altogether. BINARYMIME is not offered (`BODY=BINARYMIME`
  gets `555 5.5.4`): stored messages get CRLF line endings, which binary content would not
  survive.
- Every 2xx/4xx/5xx reply after the greeting carries an RFC 3463 enhanced status code
  (RFC 2034 §3), including aiosmtpd's own syntax and sequence errors.
- After DATA, and after the LAST BDAT chunk, exactly one reply per accepted RCPT, in RCPT
  order, on every path (RFC 2033 §4.2): delivered, rejected, over quota, over the size limit
  (aiosmtpd answers one line there), an exception in our code (aiosmtpd would send the
  exception text; we send `451 4.3.0` per recipient and log the traceback). See
  `mda.lmtp.outcome`. A recipient given twice is delivered once and answered twice
  (`mda.lmtp.handler`).
- Message text after DATA is read without a line length limit but with aiosmtpd's smuggling
  defence (only CRLF.CRLF ends the data); see `mda.lmtp.data`. BDAT chunks are exact octet
  counts, never altered; a refused chunk is still read to its end, and a chunk size that
  cannot be read closes the connection; see `mda.lmtp.chunking`.
- SMTPUTF8: command arguments are UTF-8; a non-ASCII MAIL or RCPT path needs the SMTPUTF8
  parameter at MAIL (else `553 5.6.7`), and bytes that are not UTF-8 are refused as bad
  address syntax (`mda.lmtp.paths`). Replies are UTF-8; the LHLO name must be ASCII.
- A delivery, once started, runs to its end even if the client goes away or the service is
  asked to stop: it is a task of its own that the connection only waits for.
- Graceful shutdown: `ConnectionRegistry.drain` closes idle connections with `421 4.3.2` and
  lets connections in the middle of a transaction finish it first. When the shutdown
  timeout expires, `ConnectionRegistry.cut_off` closes (with `421 4.3.2`) the connections
  that are idle or still receiving commands, message text or chunks; a delivery that has
  started (the final "." or the LAST chunk was received) is never cancelled: it runs to its
  end (each recipient's database transaction commits or rolls back), its outcomes are
  logged and its replies written. Cancelling it half-way would leave some copies committed
  but unacknowledged, and the MTA's retry would duplicate them. Commands pipelined behind
  the transaction that ends with `421` are never run.

EOF: when the peer closes the connection, aiosmtpd cancels the command loop; a transaction
that has not reached the end of DATA (or its LAST chunk) is dropped (nothing was stored, nothing answered 250),
and a delivery already started still completes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import syntax

from mda import metrics, replies
from mda.lmtp.chunking import BdatSyntaxError, ChunkedMessage, parse_bdat, skip_chunk
from mda.lmtp.data import ReceivedMessage, read_message
from mda.lmtp.handler import (
    DeliveryHandler,
    MailTransaction,
    format_peer,
    new_queue_id,
    recipient_key,
)
from mda.lmtp.outcome import DataResult, Delivered, Failed, TooBig, replies_after_data
from mda.lmtp.paths import check_path, mail_parameters
from mda.replies import Reply

log = logging.getLogger("mda.lmtp")

# Accepted recipients per transaction; one more RCPT gets `452 4.5.3`. RFC 5321 §4.5.3.1.8:
# "The minimum total number of recipients that MUST be buffered is 100"; §4.5.3.1.10: the
# reply for "too many recipients" is 452, and the client sends the rest in a new transaction.
MAX_RECIPIENTS = 1000


class ConnectionRegistry:
    """The open connections and deliveries in flight of one listener, for graceful shutdown.

    `drain()` starts the shutdown; `wait_idle(timeout)` waits until every connection has
    closed and every delivery has finished; `cut_off()` closes the connections that are not
    delivering, and `abort()` (tests, last resort) also cancels the deliveries.
    """

    def __init__(self) -> None:
        self.connections: set[LMTPProtocol] = set()
        self.deliveries: set[asyncio.Task[Any]] = set()
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def _update(self) -> None:
        if self.connections or self.deliveries:
            self._idle.clear()
        else:
            self._idle.set()

    def opened(self, connection: LMTPProtocol) -> None:
        """Record a new connection; during a drain it is told to close at once."""
        self.connections.add(connection)
        self._update()
        if self.draining:
            connection.drain()

    def closed(self, connection: LMTPProtocol) -> None:
        """Forget a closed connection."""
        self.connections.discard(connection)
        self._update()

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a delivery task until it ends; its result is consumed so an orphaned
        task (client gone) never logs "exception was never retrieved"."""
        self.deliveries.add(task)
        self._update()

        def done(finished: asyncio.Task[Any]) -> None:
            self.deliveries.discard(finished)
            self._update()
            if not finished.cancelled() and finished.exception() is not None:
                log.debug("delivery task ended with %r", finished.exception())

        task.add_done_callback(done)

    @property
    def delivering(self) -> bool:
        """True from the final "." of DATA until the replies after it are written."""
        return self._delivering

    def drain(self) -> None:
        """Stop taking transactions: idle connections get 421 and are closed; the others
        finish their current transaction first."""
        self.draining = True
        for connection in list(self.connections):
            connection.drain()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no connection is open and no delivery runs.

        Args:
            timeout: seconds to wait at most.

        Returns:
            True when everything finished in time, False on timeout.
        """
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def cut_off(self) -> None:
        """Shutdown timeout: close, with `421 4.3.2`, every connection that is idle or still
        receiving commands or message text (nothing of its transaction was stored, so the
        MTA retries it). Connections whose delivery has started are left to finish it and
        answer; they close afterwards because the registry is draining."""
        self.draining = True
        for connection in list(self.connections):
            if not connection.delivering:
                connection.cut_off()

    def abort(self) -> None:
        """Close every remaining connection at once and cancel every remaining delivery.

        Only for tearing down a listener in tests or as the very last resort: a delivery
        cancelled half-way may leave some recipients' copies committed but unanswered.
        """
        for connection in list(self.connections):
            connection.abort()
        for task in list(self.deliveries):
            task.cancel()


class LMTPProtocol(LMTP):
    """One LMTP connection.

    Args:
        handler: the MAIL/RCPT hooks and the delivery call.
        registry: shared by the listener's connections (graceful shutdown).
        hostname: our name in the greeting, LHLO and Received headers.
        max_message_size: the size limit in bytes (advertised as SIZE, checked at MAIL and
            while reading DATA or BDAT chunks).
        timeout: idle timeout in seconds.
        tls_context: server-side TLS settings; when given, LHLO offers STARTTLS (RFC 3207).
    """

    def __init__(self, handler: DeliveryHandler, *, registry: ConnectionRegistry,
                 hostname: str, max_message_size: int, timeout: float = 300,
                 tls_context: ssl.SSLContext | None = None) -> None:
        # data_size_limit=None: we advertise and enforce SIZE ourselves, with our replies.
        # enable_SMTPUTF8: command arguments are decoded as UTF-8 (undecodable bytes kept as
        # surrogates, which `check_path` refuses); LHLO is ours and advertises SMTPUTF8.
        super().__init__(handler, hostname=hostname, data_size_limit=None, timeout=timeout,
                         ident="LMTP mda ready", enable_SMTPUTF8=True,
                         tls_context=tls_context)
        self.handler = handler
        self.registry = registry
        self.max_message_size = max_message_size
        self._in_data = False
        self._delivering = False
        self._draining = False

    # --- connection lifecycle -------------------------------------------------------

    def _create_envelope(self) -> MailTransaction:
        """Each mail transaction gets its own queue id (in every log line about it)."""
        return MailTransaction()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.registry.opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.registry.closed(self)
        super().connection_lost(error)

    @property
    def idle(self) -> bool:
        """True between transactions (no MAIL given, not inside DATA)."""
        return not self._in_data and (self.envelope is None or self.envelope.mail_from is None)

    @property
    def delivering(self) -> bool:
        """True from the final "." of DATA until the replies after it are written."""
        return self._delivering

    def drain(self) -> None:
        """Close now if idle (`421 4.3.2`), else after the current transaction."""
        self._draining = True
        if self.idle:
            self._close_for_shutdown()

    def cut_off(self) -> None:
        """Shutdown timeout: say `421 4.3.2` and close, unless a delivery has started."""
        if not self._delivering:
            self._close_for_shutdown()

    def abort(self) -> None:
        """Close the connection at once, without a reply."""
        if self.transport is not None:
            self.transport.close()

    def _close_for_shutdown(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        line = replies.service_closing(self.hostname).line()
        metrics.lmtp_replies((line,))
        self.transport.write(line.encode("ascii") + b"\r\n")  # type: ignore[attr-defined]
        self.transport.close()

    async def _hang_up(self) -> None:
        """Close the connection from inside a command and never return: commands the client
        pipelined behind this one may already be buffered and must not run. The command
        loop ends when `connection_lost` cancels it."""
        if self.transport is None:
            return  # already lost: the command loop stops by itself
        if not self.transport.is_closing():
            self.transport.close()
        await asyncio.get_running_loop().create_future()

    async def _end_of_transaction(self) -> None:
        """After a transaction ended (RSET, DATA, last BDAT): during a shutdown an idle
        connection now gets `421 4.3.2` and is closed."""
        if self._draining and self.idle:
            self._close_for_shutdown()
            await self._hang_up()

    # --- replies ----------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        """Write one reply line, adding an enhanced status code if it lacks one (RFC 2034 §3:
        all 2xx/4xx/5xx replies except the greeting and the LHLO response). Text is sent as
        UTF-8 (RFC 6531 §3.7.4.2 lets SMTPUTF8 replies carry it); text decoded from invalid
        UTF-8 the peer sent goes out as `?`."""
        if isinstance(status, str):
            status = replies.with_enhanced_code(replies.printable(status)).encode(
                "utf-8", "replace")
        metrics.lmtp_replies((status,))
        await super().push(status)

    async def _write_lines(self, lines: Sequence[str]) -> None:
        """Write several reply lines in one go (CRLF after each) and wait for the buffer."""
        metrics.lmtp_replies(lines)
        self._writer.write(b"".join(replies.printable(line).encode("utf-8", "replace") + b"\r\n"
                                    for line in lines))
        await self._writer.drain()

    async def handle_exception(self, error: Exception) -> str:
        """An exception escaped a command: log the traceback, answer `451 4.3.0` — never the
        exception text, which is ours, not the client's business."""
        log.error("%s: internal error in LMTP command", format_peer(self.session.peer),
                  exc_info=error)
        return replies.temporary_failure().line()

    # --- commands -----------------------------------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """Parse the address of MAIL/RCPT like aiosmtpd, but treat every parser failure as a
        malformed address (`553 5.1.3`): the stdlib parser raises IndexError on input such as
        `a@`, which aiosmtpd would let escape as an internal error."""
        try:
            return super()._getaddr(arg)
        except (IndexError, ValueError):
            return None, None

    async def check_helo_needed(self, helo: str = "LHLO") -> bool:
        """Refuse a mail command before LHLO with `503 5.5.1 Send LHLO first` (RFC 2033
        §4.1: LMTP has no HELO or EHLO).

        Returns:
            True when the command must stop here (the refusal was sent).
        """
        if not self.session.host_name:
            await self.push(replies.send_lhlo_first().line())
            return True
        return False

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        """MAIL FROM (RFC 5321 §4.1.1.2): our path checks (`mda.lmtp.paths`), then aiosmtpd's
        parser and `DeliveryHandler.handle_MAIL`. A refused MAIL leaves no state.

        Parameters: `SIZE=n` (RFC 1870), `BODY=7BIT` / `BODY=8BITMIME` (RFC 6152),
        `SMTPUTF8` (RFC 6531 §3.4, needed for a non-ASCII path). `BODY=BINARYMIME` gets
        `555 5.5.4`: BINARYMIME is not offered (stored messages get CRLF line endings, which
        binary content would not survive)."""
        if await self.check_helo_needed():
            return
        refusal = check_path("MAIL FROM:", arg)
        if refusal is None and "BODY=BINARYMIME" in mail_parameters("MAIL FROM:", arg):
            refusal = replies.binarymime_not_offered()
        if refusal is not None:
            await self.push(refusal.line())
            return
        await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        """RCPT TO (RFC 5321 §4.1.1.3): our path checks (`mda.lmtp.paths`; a non-ASCII path
        needs SMTPUTF8 at MAIL), the `MAX_RECIPIENTS` limit (`452 4.5.3`) and no RCPT once
        BDAT chunks arrived (`503 5.5.1`), then aiosmtpd's parser and
        `DeliveryHandler.handle_RCPT`. A refused RCPT leaves no state."""
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        if envelope.mail_from:
            refusal = check_path("RCPT TO:", arg, smtputf8=bool(envelope.smtp_utf8))
            if refusal is None and envelope.chunks is not None:
                refusal = replies.rcpt_after_bdat()
            if refusal is None and len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
                refusal = replies.too_many_recipients(MAX_RECIPIENTS)
            if refusal is not None:
                await self.push(refusal.line())
                return
        await super().smtp_RCPT(arg)

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: str | None) -> None:
        """LHLO (RFC 2033 §4.1): greet and list the service extensions.

        Like EHLO it resets the transaction (RFC 5321 §4.1.4). The name must be ASCII
        (RFC 6531 §3.7.1). STARTTLS is listed only when a certificate is configured and TLS
        is not active yet (RFC 3207 §4.2).
        """
        if not arg:
            await self.push("501 Syntax: LHLO hostname")
            return
        if not arg.isascii():
            await self.push(replies.lhlo_not_ascii().line())
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = arg
        extensions = ["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8", "CHUNKING",
                      f"SIZE {self.max_message_size}"]
        if self.tls_context is not None and self._tls_protocol is None:
            extensions.append("STARTTLS")
        lines = [self.hostname, *extensions]
        await self._write_lines([f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"])

    async def smtp_AUTH(self, arg: str) -> None:
        """AUTH is not offered (LHLO does not advertise it; LMTP runs on a trusted local
        socket, RFC 2033 §1): `502 5.5.1`, and HELP does not list it (no `@syntax`)."""
        await self.push(replies.not_supported("AUTH").line())

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        """RSET (RFC 5321 §4.1.1.5); during a shutdown an idle connection is then closed."""
        await super().smtp_RSET(arg)
        await self._end_of_transaction()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """DATA (RFC 2033 §4.2): read the message, deliver it, one reply per recipient.

        Without an accepted RCPT the command fails with 503 as §4.2 requires, and so does
        DATA after BDAT chunks in the same transaction (RFC 3030 §3). The message is read to
        its terminating "." even when too big; then `replies_after_data` answers every
        accepted recipient, in RCPT order.
        """
        if await self.check_helo_needed("LHLO"):
            return
        if self.envelope.chunks is not None:
            await self.push(replies.data_after_bdat().line())
            return
        if not self.envelope.rcpt_tos:
            await self.push(replies.need_rcpt().line())
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        self._in_data = True
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            received = await read_message(self._reader, self.max_message_size,
                                          self._reset_timeout)
            await self._finish_message(received)
        finally:
            self._in_data = False
        await self._end_of_transaction()

    @syntax("BDAT <size> [LAST]")
    async def smtp_BDAT(self, arg: str | None) -> None:
        """BDAT (RFC 3030 §2): one chunk of message text, exactly `size` octets.

        A chunk that is not the last is answered `250 2.0.0`; after the LAST chunk the
        message is delivered like after DATA: one reply per accepted recipient, in RCPT
        order (RFC 2033 §4.2). A refused chunk (before LHLO, MAIL or an accepted RCPT:
        `503 5.5.1`; anything but LAST after the size: `501 5.5.4`) is still read to its
        end, so the next command is found where the client put it. The size limit applies
        to the chunks together; past it they are read and discarded, and the LAST chunk is
        answered `552 5.3.4` per recipient. A size that is not a number leaves no way to
        find the end of the chunk: `501 5.5.4`, then the connection is closed.
        """
        try:
            command = parse_bdat(arg)
        except BdatSyntaxError as error:
            if error.size is None:
                await self.push(replies.bdat_syntax(closing=True).line())
                await self._hang_up()
                return
            await self._refuse_chunk(error.size, replies.bdat_syntax())
            return
        envelope = self.envelope
        refusal = (replies.send_lhlo_first() if not self.session.host_name
                   else replies.need_mail() if not envelope.mail_from
                   else replies.need_rcpt() if not envelope.rcpt_tos else None)
        if refusal is not None:
            await self._refuse_chunk(command.size, refusal)
            return
        if envelope.chunks is None:
            envelope.chunks = ChunkedMessage(self.max_message_size)
        self._in_data = True
        try:
            await envelope.chunks.read_chunk(self._reader, command.size, self._reset_timeout)
            if not command.last:
                await self.push(replies.chunk_received(command.size, envelope.chunks.size)
                                .line())
                return
            await self._finish_message(envelope.chunks.message())
        finally:
            self._in_data = False
        await self._end_of_transaction()

    async def _refuse_chunk(self, size: int, refusal: Reply) -> None:
        """Skip a refused BDAT chunk's `size` octets, then answer `refusal` (RFC 3030 §2:
        the client may have sent the chunk already; it must not be read as commands)."""
        await skip_chunk(self._reader, size, self._reset_timeout)
        await self.push(refusal.line())

    async def _finish_message(self, received: ReceivedMessage) -> None:
        """The message is in (final "." of DATA, or the LAST chunk): deliver it, start a new
        transaction and answer every accepted recipient, in RCPT order."""
        self._delivering = True
        try:
            answers = await self._deliver(tuple(self.envelope.rcpt_tos), received.data,
                                          received.too_big)
            self._set_post_data_state()
            await self._write_lines([answer.line() for answer in answers])
        finally:
            self._delivering = False

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str | None) -> None:
        """STARTTLS (RFC 3207 §4), offered when a certificate is configured.

        Refused: without a certificate (`502 5.5.1`, as for any command not offered), with an
        argument (`501 5.5.4`), before LHLO (`503 5.5.1`) and when TLS is already active
        (`503 5.5.1`, §4.2). After the handshake aiosmtpd forgets everything the client said
        (session, transaction, LHLO: §4.2) and drops plaintext pipelined behind STARTTLS.
        A failed handshake closes the connection.
        """
        if self.tls_context is None:
            refusal: Reply | None = replies.not_supported("STARTTLS")
        elif self._tls_protocol is not None:
            refusal = replies.tls_already_active()
        elif arg:
            refusal = replies.starttls_syntax()
        elif not self.session.host_name:
            refusal = replies.send_lhlo_first()
        else:
            refusal = None
        if refusal is not None:
            await self.push(refusal.line())
            return
        await super().smtp_STARTTLS(arg)

    async def _deliver(self, recipients: tuple[str, ...], data: bytes | None,
                       too_big: bool) -> list[Reply]:
        """Deliver and log in a task of its own, and wait for its replies.

        The task is tracked by the registry and shielded: neither a lost connection (aiosmtpd
        cancels the command loop) nor the shutdown timeout cuts it short, so every
        recipient's database transaction ends (commit or rollback) and every outcome is
        logged, even when nobody is left to read the replies.

        Returns:
            One reply per recipient, in RCPT order (RFC 2033 §4.2).
        """
        task = asyncio.ensure_future(
            self._deliver_and_log(self.session, self.envelope, recipients, data, too_big))
        self.registry.track(task)
        return await asyncio.shield(task)

    async def _deliver_and_log(self, session: Any, envelope: Any, recipients: tuple[str, ...],
                               data: bytes | None, too_big: bool) -> list[Reply]:
        """The delivery task: hand the message over, turn what happened into one reply per
        recipient and log one line each. Never raises except CancelledError."""
        queue_id = getattr(envelope, "queue_id", None) or new_queue_id()
        started = time.monotonic()
        result: DataResult
        try:
            if too_big:
                result = TooBig(self.max_message_size)
            else:
                result = Delivered(await self.handler.deliver(session, envelope, queue_id,
                                                              data or b""))
            answers = replies_after_data(recipients, result)
        except Exception:
            log.exception("%s: internal error after DATA; answering 451 for every "
                          "recipient", queue_id)
            result = Failed()
            answers = replies_after_data(recipients, result)
        try:
            self._log_outcomes(queue_id, recipients, result, answers,
                               (time.monotonic() - started) * 1000)
        except Exception:
            log.exception("%s: could not log the outcomes", queue_id)
        return answers

    def _log_outcomes(self, queue_id: str, recipients: Sequence[str], result: DataResult,
                      answers: Sequence[Reply], elapsed_ms: float) -> None:
        """One log line per recipient: queue id, recipient, result, mailboxes, ms, reply.
        A recipient given again in the same transaction is logged `result=duplicate`. The
        same results, and the transaction's time, go to `mda.metrics`."""
        metrics.delivery_finished(elapsed_ms / 1000)
        outcomes = list(result.outcomes) if isinstance(result, Delivered) else []
        seen: set[str] = set()
        for index, (rcpt, answer) in enumerate(zip(recipients, answers)):
            outcome = outcomes[index] if index < len(outcomes) else None
            key = recipient_key(rcpt)
            repeated = key in seen
            seen.add(key)
            if repeated and outcome is not None:
                # The same recipient again: answered like its first RCPT, not stored again.
                what, mailboxes, ms = "duplicate", (), 0.0
            elif outcome is not None and outcome.recipient == rcpt:
                what, mailboxes, ms = outcome.result, outcome.mailboxes, outcome.elapsed_ms
            else:
                what = "too_big" if isinstance(result, TooBig) else "error"
                mailboxes, ms = (), elapsed_ms
            metrics.recipient_outcome(what, "data")
            log.info("%s: rcpt=<%s> result=%s mailboxes=%s ms=%.1f reply=\"%s %s\"",
                     queue_id, rcpt, what, ",".join(mailboxes) or "-", ms,
                     answer.code, answer.enhanced)
