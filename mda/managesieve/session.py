"""One ManageSieve connection's state machine and every command of RFC 5804 §2.

The server (`mda.managesieve.server`) owns the socket; it feeds parsed events to
`Session.handle` and writes the `Reply` it gets back:

    session = Session(context, peer, tls=False)
    writer.write(session.greeting())              # capabilities + OK (RFC 5804 §1.7)
    reply = await session.handle(event)           # a Command or BadCommand from the parser
    writer.write(reply.data)                      # then STARTTLS or close if asked

States (RFC 5804 §1.5, §2.14):

| state | commands | moves to |
| --- | --- | --- |
| non-authenticated | CAPABILITY, AUTHENTICATE, STARTTLS, NOOP, LOGOUT | authenticated (AUTHENTICATE OK) |
| SASL exchange | continuation strings, `"*"` cancels | authenticated or back |
| authenticated | CAPABILITY, NOOP, LOGOUT, HAVESPACE, PUTSCRIPT, LISTSCRIPTS, SETACTIVE, GETSCRIPT, DELETESCRIPT, RENAMESCRIPT, CHECKSCRIPT, UNAUTHENTICATE | non-authenticated (UNAUTHENTICATE) |

`handle` never raises: a malformed or misplaced command gets `NO` with a reason, a dead
database `NO (TRYLATER)`, and anything unexpected `NO "internal error"` plus a log line; the
connection stays usable. Every store call is scoped by the logged-in user's id, so one user
can never name another's scripts.

Response codes (RFC 5804 §1.3) used: QUOTA/MAXSCRIPTS, QUOTA/MAXSIZE, QUOTA/MAXSTORAGE
(script quotas), NONEXISTENT, ACTIVE, ALREADYEXISTS, WARNINGS (compiler warnings), TRYLATER
(database down, too many failed logins), ENCRYPT-NEEDED (plain-text login refused on a
connection that could use STARTTLS), AUTH-TOO-WEAK (refused where no TLS is possible), TAG.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from mda import __version__, metrics
from mda.config import Settings
from mda.delivery.outbound import outbound_warnings
from mda.managesieve import sasl
from mda.managesieve.throttle import LoginThrottle
from mda.managesieve.wire import (Atom, BadCommand, Command, ErrorKind, ResponseCode, Token,
                                  encode_line, encode_response, encode_string, printable)
from mda.passwords import (PasswordSchemeError, hash_password, needs_rehash, verify_password,
                           verify_unknown_user)
from mda.sieve import Program, SieveCompileError, capabilities, compile_cached
from mda.sieve_config import sieve_limits
from mda.store import (AlreadyExists, InvalidInput, InvalidScriptName, ScriptActive,
                       ScriptNotFound, Store, StoreError, StoreUnavailable, UserNotFound,
                       activate_script, deactivate_scripts, delete_script, find_user,
                       get_script, normalize_address, normalize_script_name, rename_script,
                       set_password_hash)
from mda.store.errors import ScriptQuotaExceeded
from mda.store.scripts import (ScriptQuota, check_script_quota, list_script_names, put_script,
                               script_size)

log = logging.getLogger("mda.managesieve")

MIN_LITERAL = 64 * 1024  # literals (names, SASL) always allowed up to this, octets


class State(enum.Enum):
    """Where the connection is in RFC 5804's state machine."""

    NONAUTH = "non-authenticated"
    AUTH = "authenticated"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True)
class Reply:
    """What to send, and what the server must do after sending it.

    Attributes:
        data: the octets to write.
        starttls: start TLS now (after STARTTLS's OK), then send `Session.tls_started()`.
        close: close the connection (after LOGOUT or BYE).
    """

    data: bytes
    starttls: bool = False
    close: bool = False


@dataclass(frozen=True, slots=True)
class Peer:
    """The client of a connection.

    Attributes:
        address: its IP address, or "local" for a unix-domain socket.
        description: how to name it in logs (`192.0.2.7:51234`).
        loopback: it is this machine (loopback address or unix socket).
    """

    address: str
    description: str
    loopback: bool

    @classmethod
    def from_sockname(cls, peername: object) -> Peer:
        """Build from `transport.get_extra_info("peername")` (a tuple for TCP, a str or
        None for unix sockets)."""
        if isinstance(peername, tuple) and peername:
            host = str(peername[0])
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return cls(host, host, False)
            mapped = getattr(ip, "ipv4_mapped", None)
            loopback = ip.is_loopback or bool(mapped and mapped.is_loopback)
            where = f"[{host}]:{peername[1]}" if ":" in host else f"{host}:{peername[1]}"
            return cls(host, where, loopback)
        return cls("local", "unix socket", True)


class ServerContext:
    """What every session of one server shares: store, settings, compiled limits, TLS,
    the failed-login counter and the login check.

    Args:
        store: the database.
        settings: mda's settings.
        tls_context: the server's TLS context for STARTTLS, or None without a certificate.
        throttle: failed logins per peer (a new one from the settings by default).
        sleep: awaited before answering a failed login (`asyncio.sleep`; tests may pass
            another).
    """

    def __init__(self, store: Store, settings: Settings, *,
                 tls_context: ssl.SSLContext | None = None,
                 throttle: LoginThrottle | None = None,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.store = store
        self.settings = settings
        self.tls_context = tls_context
        self.limits = sieve_limits(settings)
        self.quota = ScriptQuota.from_settings(settings)
        self.throttle = throttle or LoginThrottle(settings.managesieve_auth_max_failures,
                                                  settings.managesieve_auth_failure_window)
        self.sleep = sleep
        self.max_literal = max(settings.sieve_max_script_size, MIN_LITERAL)
        self.sieve_extensions = " ".join(capabilities())
        self.notify_methods = "mailto" if "enotify" in capabilities() else None


class CommandError(Exception):
    """A command is refused; becomes `NO [(code)] "text"`."""

    def __init__(self, text: str, code: ResponseCode | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


def _code(name: str) -> ResponseCode:
    return ResponseCode(name)


_QUOTA_CODES = {"scripts": "QUOTA/MAXSCRIPTS", "size": "QUOTA/MAXSIZE",
                "storage": "QUOTA/MAXSTORAGE"}


@dataclass(frozen=True, slots=True)
class _Signature:
    """How many arguments a command takes, and what they are called (for messages)."""

    names: tuple[str, ...]
    optional: int = 0  # the last `optional` names may be left out

    def check(self, command: str, args: tuple[Token, ...]) -> None:
        low, high = len(self.names) - self.optional, len(self.names)
        if low <= len(args) <= high:
            return
        if not self.names:
            raise CommandError(f"{command} takes no arguments; got {len(args)}")
        wanted = f"{low}" if low == high else f"{low} or {high}"
        plural = "" if high == 1 else "s"
        raise CommandError(f"{command} takes {wanted} argument{plural} "
                           f"({', '.join(self.names)}); got {len(args)}")


_SIGNATURES = {
    "CAPABILITY": _Signature(()),
    "LOGOUT": _Signature(()),
    "STARTTLS": _Signature(()),
    "UNAUTHENTICATE": _Signature(()),
    "LISTSCRIPTS": _Signature(()),
    "NOOP": _Signature(("tag",), optional=1),
    "AUTHENTICATE": _Signature(("mechanism", "initial response"), optional=1),
    "HAVESPACE": _Signature(("script name", "size")),
    "PUTSCRIPT": _Signature(("script name", "script")),
    "CHECKSCRIPT": _Signature(("script",)),
    "SETACTIVE": _Signature(("script name",)),
    "GETSCRIPT": _Signature(("script name",)),
    "DELETESCRIPT": _Signature(("script name",)),
    "RENAMESCRIPT": _Signature(("old script name", "new script name")),
}
_ANY_STATE = frozenset({"CAPABILITY", "LOGOUT", "NOOP"})
_NONAUTH_ONLY = frozenset({"AUTHENTICATE", "STARTTLS"})


def _login_name(text: str) -> str:
    """A login name as the store looks it up: an address with its domain lower-cased
    (`mda.store.normalize_address`), or the text as it is when it is no address."""
    try:
        return normalize_address(text)
    except InvalidInput:
        return text


def _same_address(authzid: str, authcid: str) -> bool:
    """Whether a SASL authorization identity names the authenticated user itself."""
    return _login_name(authzid) == _login_name(authcid)


def _text(token: Token) -> str:
    """A string argument's value; an atom is taken as the string it spells (lenient)."""
    return token.text


class Session:
    """The state of one ManageSieve connection (RFC 5804).

    Args:
        context: what the server's sessions share.
        peer: the client.
        tls: the connection is already encrypted (implicit TLS).
    """

    def __init__(self, context: ServerContext, peer: Peer, *, tls: bool = False) -> None:
        self.context = context
        self.peer = peer
        self.tls = tls
        self.state = State.NONAUTH
        self.user_id: int | None = None
        self.address: str | None = None
        self._sasl: sasl.Exchange | None = None

    # ------------------------------------------------------------------ greeting, TLS

    @property
    def plaintext_allowed(self) -> bool:
        """PLAIN and LOGIN may be used here: TLS, a loopback peer, or allowed by setting."""
        return self.tls or self.peer.loopback or self.context.settings.allow_plaintext_auth

    @property
    def starttls_available(self) -> bool:
        """STARTTLS is offered: not yet encrypted and a certificate is configured."""
        return not self.tls and self.context.tls_context is not None

    def capability_lines(self) -> bytes:
        """The capability lines (RFC 5804 §1.7), without the final OK."""
        settings = self.context.settings
        out = encode_line("IMPLEMENTATION", f"mda {__version__}")
        out += encode_line("SASL", " ".join(sasl.MECHANISMS) if self.plaintext_allowed
                           else "")
        out += encode_line("SIEVE", self.context.sieve_extensions)
        if self.context.notify_methods:
            out += encode_line("NOTIFY", self.context.notify_methods)
        if self.starttls_available:
            out += encode_line("STARTTLS")
        out += encode_line("MAXREDIRECTS", str(settings.sieve_max_redirects))
        if self.state is State.AUTH and self.address is not None:
            out += encode_line("OWNER", self.address)
        out += encode_line("UNAUTHENTICATE")
        out += encode_line("VERSION", "1.0")
        return out

    def greeting(self) -> bytes:
        """The server's first words: capabilities and OK (RFC 5804 §1.7)."""
        return self.capability_lines() + encode_response("OK", text="mda ManageSieve ready")

    def tls_started(self) -> bytes:
        """Mark the connection encrypted; the capabilities to send again (RFC 5804 §2.2)."""
        self.tls = True
        return self.capability_lines() + encode_response("OK", text="TLS negotiation "
                                                                     "successful")

    @staticmethod
    def shutdown_notice() -> bytes:
        """The BYE sent when the server stops (RFC 5804 §1.4 BYE)."""
        return encode_response("BYE", text="server shutting down")

    # ------------------------------------------------------------------ dispatch

    async def handle(self, event: Command | BadCommand) -> Reply:
        """Answer one command (or parse error).

        Args:
            event: from `mda.managesieve.wire.CommandParser.next_event`.

        Returns:
            The reply; never raises.
        """
        try:
            if self._sasl is not None:
                return await self._sasl_step(event)
            if isinstance(event, BadCommand):
                return self._no(self._parse_error(event))
            return await self._dispatch(event)
        except CommandError as exc:
            return self._no(exc)
        except StoreUnavailable as exc:
            log.warning("ManageSieve %s: store unavailable: %s", self.peer.description, exc)
            return self._no(CommandError("database unavailable, try again later",
                                         _code("TRYLATER")))
        except Exception:
            name = event.name if isinstance(event, Command) else event.command
            log.exception("ManageSieve %s: internal error in %s", self.peer.description,
                          name or "command")
            self._sasl = None
            return self._no(CommandError("internal error"))

    @staticmethod
    def _no(error: CommandError) -> Reply:
        return Reply(encode_response("NO", error.code, error.text))

    @staticmethod
    def _ok(text: str | None = None, code: ResponseCode | None = None) -> Reply:
        return Reply(encode_response("OK", code, text))

    def _parse_error(self, event: BadCommand) -> CommandError:
        """The NO for a line the parser could not read."""
        if event.kind is ErrorKind.LITERAL_TOO_LARGE and event.command == "PUTSCRIPT":
            return CommandError(f"script of {event.size} octets is over the limit of "
                                f"{self.context.settings.sieve_max_script_size} octets",
                                _code("QUOTA/MAXSIZE"))
        script_arg = {"PUTSCRIPT": 2, "CHECKSCRIPT": 1}.get(event.command)
        if event.kind is ErrorKind.NOT_UTF8 and event.argument == script_arg:
            where = event.detail.rsplit(" at ", 1)[-1]
            return CommandError(f"script is not UTF-8 at {where} (RFC 5228 §2.2)")
        prefix = f"{event.command}: " if event.command else ""
        return CommandError(f"{prefix}{event.detail}")

    async def _dispatch(self, command: Command) -> Reply:
        name = command.name
        if not name:
            raise CommandError("expected a command name")
        signature = _SIGNATURES.get(name)
        if signature is None:
            raise CommandError(f"unknown command {command.tokens[0].text!r}")
        if self.state is State.NONAUTH and name not in _ANY_STATE | _NONAUTH_ONLY:
            raise CommandError(f"{name}: authenticate first")
        if self.state is State.AUTH and name in _NONAUTH_ONLY:
            raise CommandError(f"{name}: already authenticated")
        signature.check(name, command.args)
        handler = getattr(self, f"_cmd_{name.lower()}")
        return await handler(*command.args)

    def _user(self) -> int:
        assert self.user_id is not None
        return self.user_id

    # ------------------------------------------------------------------ any state

    async def _cmd_capability(self) -> Reply:
        """RFC 5804 §2.4."""
        return Reply(self.capability_lines() + encode_response("OK"))

    async def _cmd_noop(self, tag: Token | None = None) -> Reply:
        """RFC 5804 §2.13: `OK (TAG "x")` echoes the tag; a tag holding a control
        character (NUL, CR, ESC ...) is refused rather than echoed."""
        if tag is None:
            return self._ok("Done")
        if printable(_text(tag)) != _text(tag):
            raise CommandError("NOOP: the tag must not contain control characters")
        return self._ok("Done", ResponseCode("TAG", _text(tag)))

    async def _cmd_logout(self) -> Reply:
        """RFC 5804 §2.3: OK, then the server closes the connection."""
        self.state = State.LOGOUT
        return Reply(encode_response("OK", text="Logout completed"), close=True)

    # ------------------------------------------------------------------ non-authenticated

    async def _cmd_starttls(self) -> Reply:
        """RFC 5804 §2.2."""
        if self.tls:
            raise CommandError("TLS is already active")
        if self.context.tls_context is None:
            raise CommandError("STARTTLS is not available: no certificate configured")
        return Reply(encode_response("OK", text="Begin TLS negotiation now"), starttls=True)

    async def _cmd_authenticate(self, mechanism: Token,
                                initial: Token | None = None) -> Reply:
        """RFC 5804 §2.1 with SASL PLAIN (RFC 4616) or LOGIN."""
        mech = _text(mechanism).upper()
        if mech not in sasl.MECHANISMS:
            raise CommandError(f"unsupported SASL mechanism {_text(mechanism)!r} "
                               f"(offered: {' '.join(sasl.MECHANISMS)})")
        if not self.plaintext_allowed:
            # RFC 5804 §1.3: ENCRYPT-NEEDED when STARTTLS would help, else AUTH-TOO-WEAK.
            if self.starttls_available:
                raise CommandError("plain-text authentication needs TLS: use STARTTLS "
                                   "first", _code("ENCRYPT-NEEDED"))
            raise CommandError("plain-text authentication is not allowed on an unencrypted "
                               "connection", _code("AUTH-TOO-WEAK"))
        try:
            exchange, step = sasl.start(mech, None if initial is None else _text(initial),
                                        same_identity=_same_address)
        except sasl.SaslError as exc:
            raise CommandError(str(exc)) from exc
        self._sasl = exchange
        return await self._sasl_next(step)

    async def _sasl_step(self, event: Command | BadCommand) -> Reply:
        """A client answer during a SASL exchange (RFC 5804 §2.1: a string, `"*"` aborts)."""
        exchange, self._sasl = self._sasl, None
        assert exchange is not None
        if isinstance(event, BadCommand):
            raise CommandError(f"authentication failed: {event.detail}")
        if len(event.tokens) != 1:
            raise CommandError("authentication failed: expected one base64 string")
        try:
            step = exchange.respond(_text(event.tokens[0]))
        except sasl.SaslAborted as exc:
            raise CommandError(str(exc)) from exc
        except sasl.SaslError as exc:
            raise CommandError(f"authentication failed: {exc}") from exc
        self._sasl = exchange
        return await self._sasl_next(step)

    async def _sasl_next(self, step: sasl.Step) -> Reply:
        if isinstance(step, sasl.Challenge):
            return Reply(encode_string(step.encoded()) + b"\r\n")
        self._sasl = None
        return await self._login(step)

    async def _login(self, credentials: sasl.Credentials) -> Reply:
        """Check the credentials; failures are delayed and counted (`_throttle_key`).

        The attempt counts as a failure from the moment it starts (`LoginThrottle.begin`),
        so parallel connections cannot check more than the allowed number of passwords.
        """
        context = self.context
        settings = context.settings
        throttle, key = context.throttle, self._throttle_key(credentials.authcid)
        if not throttle.begin(key):
            log.warning("ManageSieve %s: login for %r refused: too many failed logins",
                        self.peer.description, credentials.authcid)
            metrics.managesieve_login("throttled")
            await context.sleep(settings.managesieve_auth_failure_delay)
            raise CommandError("too many failed logins; try again later", _code("TRYLATER"))
        try:
            user_id, address = await self._verify(credentials)
        except BaseException:
            throttle.cancelled(key)
            raise
        if user_id is None or address is None:
            throttle.failed(key)
            log.warning("ManageSieve %s: failed login for %r", self.peer.description,
                        credentials.authcid)
            metrics.managesieve_login("failed")
            await context.sleep(settings.managesieve_auth_failure_delay)
            raise CommandError("authentication failed")
        throttle.succeeded(key)
        self.state = State.AUTH
        self.user_id = user_id
        self.address = address
        log.info("ManageSieve %s: login %s%s", self.peer.description, address,
                 " (TLS)" if self.tls else "")
        metrics.managesieve_login("ok")
        # RFC 5804 §2.1: capabilities are re-sent only after a SASL security layer; PLAIN
        # and LOGIN have none.
        return self._ok("Logged in")

    def _throttle_key(self, login: str) -> Hashable:
        """What failed logins are counted against.

        A remote peer: its address. A loopback or unix-socket peer: its address and the
        login name (domain lower-cased), because a webmail on this machine speaks for all
        its users from one address, and one user's typos must not lock out the others.
        """
        if not self.peer.loopback:
            return self.peer.address
        return self.peer.address, _login_name(login)

    async def _verify(self, credentials: sasl.Credentials) -> tuple[int | None, str | None]:
        """The user's (id, address) when the password matches, else (None, None)."""
        store = self.context.store
        async with store.read() as session:
            try:
                user = await find_user(session, credentials.authcid)
            except InvalidInput:
                user = None
        if user is None or user.password_hash is None:
            await asyncio.to_thread(verify_unknown_user, credentials.password)
            return None, None
        stored = user.password_hash
        try:
            ok = await asyncio.to_thread(verify_password, stored, credentials.password)
        except PasswordSchemeError as exc:
            log.error("ManageSieve: the stored password of %s cannot be used: %s",
                      user.address, exc)
            return None, None
        if not ok:
            return None, None
        if needs_rehash(stored):
            await self._rehash(user.address, credentials.password)
        return user.id, user.address

    async def _rehash(self, address: str, password: str) -> None:
        """Replace an old-scheme hash by a current one after a good login (best effort)."""
        try:
            fresh = await asyncio.to_thread(hash_password, password)
            async with self.context.store.transaction() as session:
                await set_password_hash(session, address, fresh)
        except (StoreError, ValueError) as exc:
            log.warning("ManageSieve: could not upgrade the password hash of %s: %s",
                        address, exc)
        else:
            log.info("ManageSieve: upgraded the password hash of %s to argon2id", address)

    # ------------------------------------------------------------------ authenticated

    async def _cmd_unauthenticate(self) -> Reply:
        """RFC 5804 §2.14.1: back to the non-authenticated state."""
        log.info("ManageSieve %s: %s unauthenticated", self.peer.description, self.address)
        self.state = State.NONAUTH
        self.user_id = None
        self.address = None
        return self._ok()

    async def _cmd_havespace(self, name: Token, size: Token) -> Reply:
        """RFC 5804 §2.5: would a script of this size fit?"""
        if not isinstance(size, Atom) or not size.text.isdigit():
            raise CommandError(f"HAVESPACE: size must be a number of octets, not "
                               f"{_text(size)!r}")
        canonical = self._name(name)
        async with self.context.store.read() as session:
            await self._check_quota(session, canonical, int(size.text))
        return self._ok()

    async def _check_quota(self, session, name: str, size: int) -> None:
        try:
            await check_script_quota(session, self._user(), name, size, self.context.quota)
        except ScriptQuotaExceeded as exc:
            raise CommandError(str(exc), _code(_QUOTA_CODES[exc.limit])) from exc
        except UserNotFound as exc:
            raise CommandError("this account no longer exists") from exc

    async def _cmd_putscript(self, name: Token, script: Token) -> Reply:
        """RFC 5804 §2.6: store a script that compiles, within the quotas."""
        canonical = self._name(name)
        source = _text(script)
        size = script_size(source)
        limit = self.context.settings.sieve_max_script_size
        if size > limit:
            raise CommandError(f"script of {size} octets is over the limit of {limit} "
                               f"octets", _code("QUOTA/MAXSIZE"))
        program = await self._compile(source)
        try:
            async with self.context.store.transaction() as session:
                await put_script(session, self._user(), canonical, source,
                                 quota=self.context.quota)
        except ScriptQuotaExceeded as exc:
            raise CommandError(str(exc), _code(_QUOTA_CODES[exc.limit])) from exc
        except UserNotFound as exc:
            raise CommandError("this account no longer exists") from exc
        log.info("ManageSieve %s: %s stored script %r (%d octets)", self.peer.description,
                 self.address, canonical, size)
        return self._compiled_ok(program)

    async def _cmd_checkscript(self, script: Token) -> Reply:
        """RFC 5804 §2.12: compile only."""
        return self._compiled_ok(await self._compile(_text(script)))

    async def _compile(self, source: str) -> Program:
        """Compile in a worker thread (a large script must not stall other sessions)."""
        try:
            return await asyncio.to_thread(compile_cached, source, limits=self.context.limits)
        except SieveCompileError as exc:
            raise CommandError(str(exc)) from exc

    def _compiled_ok(self, program: Program) -> Reply:
        """OK, or `OK (WARNINGS) "..."` when the compiler warned or the script sends mail
        (redirect, vacation, notify) on a server without outbound submission (RFC 5804
        §1.3, §2.6; `mda.delivery.outbound_warnings`)."""
        warnings = [*program.warnings, *outbound_warnings(program, self.context.settings)]
        if warnings:
            return self._ok("; ".join(warnings), _code("WARNINGS"))
        return self._ok()

    async def _cmd_listscripts(self) -> Reply:
        """RFC 5804 §2.7: one line per script, the active one marked ACTIVE."""
        async with self.context.store.read() as session:
            scripts = await list_script_names(session, self._user())
        out = b"".join(encode_string(name) + (b" ACTIVE" if active else b"") + b"\r\n"
                       for name, active in scripts)
        return Reply(out + encode_response("OK"))

    async def _cmd_setactive(self, name: Token) -> Reply:
        """RFC 5804 §2.8: activate a script; `""` deactivates all."""
        if _text(name) == "":
            async with self.context.store.transaction() as session:
                await deactivate_scripts(session, self._user())
            log.info("ManageSieve %s: %s deactivated their script", self.peer.description,
                     self.address)
            return self._ok()
        canonical = self._name(name)
        async with self.context.store.read() as session:
            script = await self._get(session, canonical)
        # A script stored before a limit was lowered may no longer compile: refuse it
        # rather than activate a script delivery would skip.
        await self._compile(script.source)
        async with self.context.store.transaction() as session:
            try:
                await activate_script(session, self._user(), canonical)
            except ScriptNotFound as exc:
                raise CommandError(str(exc), _code("NONEXISTENT")) from exc
        log.info("ManageSieve %s: %s activated script %r", self.peer.description,
                 self.address, canonical)
        return self._ok()

    async def _cmd_getscript(self, name: Token) -> Reply:
        """RFC 5804 §2.9: the source as a literal, then OK."""
        canonical = self._name(name)
        async with self.context.store.read() as session:
            script = await self._get(session, canonical)
        data = script.source.encode("utf-8")
        return Reply(b"{%d}\r\n" % len(data) + data + b"\r\n" + encode_response("OK"))

    async def _cmd_deletescript(self, name: Token) -> Reply:
        """RFC 5804 §2.10: never the active script (NO (ACTIVE))."""
        canonical = self._name(name)
        async with self.context.store.transaction() as session:
            try:
                await delete_script(session, self._user(), canonical)
            except ScriptNotFound as exc:
                raise CommandError(str(exc), _code("NONEXISTENT")) from exc
            except ScriptActive as exc:
                raise CommandError(str(exc), _code("ACTIVE")) from exc
        log.info("ManageSieve %s: %s deleted script %r", self.peer.description, self.address,
                 canonical)
        return self._ok()

    async def _cmd_renamescript(self, old: Token, new: Token) -> Reply:
        """RFC 5804 §2.11.1: keeps the active state."""
        old_name, new_name = self._name(old), self._name(new)
        async with self.context.store.transaction() as session:
            try:
                await rename_script(session, self._user(), old_name, new_name)
            except ScriptNotFound as exc:
                raise CommandError(str(exc), _code("NONEXISTENT")) from exc
            except AlreadyExists as exc:
                raise CommandError(str(exc), _code("ALREADYEXISTS")) from exc
        log.info("ManageSieve %s: %s renamed script %r to %r", self.peer.description,
                 self.address, old_name, new_name)
        return self._ok()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _name(token: Token) -> str:
        """A script name checked and NFC-normalised (RFC 5804 §1.6)."""
        try:
            return normalize_script_name(_text(token))
        except InvalidScriptName as exc:
            raise CommandError(f"invalid script name: {exc}") from exc

    async def _get(self, session, name: str):
        try:
            return await get_script(session, self._user(), name)
        except ScriptNotFound as exc:
            raise CommandError(str(exc), _code("NONEXISTENT")) from exc


__all__ = ["MIN_LITERAL", "Peer", "Reply", "ServerContext", "Session", "State"]
