"""Server side of the SASL mechanisms ManageSieve offers: PLAIN (RFC 4616) and LOGIN.

Sans-IO. `start(mechanism, initial)` begins an exchange; the caller sends each `Challenge`
to the client as a base64 string (RFC 5804 §2.1) and hands the client's answer to
`Exchange.respond` until it returns `Credentials`, which the caller then checks against
the user's password:

    exchange, step = start("PLAIN", None)        # no initial response: an empty challenge
    step = exchange.respond("AGpvZQBzZWNyZXQ=")  # Credentials("joe", "secret", "")

Every client string is base64 (RFC 4648 §4, padding required); `"*"` cancels the exchange
(RFC 5804 §2.1). Errors:

```
SaslError              the exchange failed; the message is safe to show the client
 ├── UnknownMechanism  not PLAIN or LOGIN
 └── SaslAborted       the client answered "*"
```

PLAIN (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`, UTF-8; authcid and passwd must
not be empty. mda has no proxy authorization, so an authzid other than empty or the
authcid itself is refused; the caller says what "itself" means (`start(same_identity=)`:
the session compares addresses with the domain case-insensitive). LOGIN (draft-murchison-sasl-login): challenges `Username:` and
`Password:`; an initial response is taken as the user name.
"""

from __future__ import annotations

import base64
import binascii
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

MECHANISMS = ("PLAIN", "LOGIN")
ABORT = "*"


class SaslError(Exception):
    """The SASL exchange failed; `str()` is the reason to send with NO."""


class UnknownMechanism(SaslError):
    """The client asked for a mechanism the server does not offer."""


class SaslAborted(SaslError):
    """The client cancelled the exchange with `"*"` (RFC 5804 §2.1)."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """A server challenge: `data` is sent base64-encoded as a string."""

    data: bytes

    def encoded(self) -> str:
        """The challenge as the base64 text to send."""
        return base64.b64encode(self.data).decode("ascii")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client proved it knows, still to be checked.

    Attributes:
        authcid: the authentication identity (the user's address as typed).
        password: the password (never log it).
        authzid: the authorization identity asked for ("" = the same as authcid).
    """

    authcid: str
    password: str = field(repr=False)
    authzid: str = ""


Step = Challenge | Credentials


def decode_response(text: str) -> bytes:
    """Decode a client response string (RFC 5804 §2.1: base64).

    Args:
        text: the string as received.

    Returns:
        The decoded octets.

    Raises:
        SaslAborted: the text is `*`.
        SaslError: the text is not base64 (RFC 4648 §4 alphabet and padding).
    """
    if text == ABORT:
        raise SaslAborted("authentication cancelled by the client")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SaslError(f"response is not valid base64 ({exc})") from exc


class Exchange(ABC):
    """One SASL exchange in progress; subclasses implement a mechanism."""

    name = ""

    @abstractmethod
    def first(self, initial: bytes | None) -> Step:
        """The first step, given the initial response (None when the client sent none)."""

    @abstractmethod
    def respond(self, text: str) -> Step:
        """Take the client's answer to the last challenge.

        Args:
            text: the client's string, as received (base64, or `*` to cancel).

        Returns:
            The next challenge, or the credentials when the exchange is complete.

        Raises:
            SaslAborted, SaslError.
        """


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SaslError(f"{what} is not UTF-8") from exc


class PlainExchange(Exchange):
    """SASL PLAIN (RFC 4616): one message `authzid NUL authcid NUL passwd`.

    Args:
        same_identity: `(authzid, authcid) -> bool`, whether a non-empty authzid names
            the authcid's own identity (exact equality by default).
    """

    name = "PLAIN"

    def __init__(self, same_identity: Callable[[str, str], bool] = operator.eq) -> None:
        self._same_identity = same_identity

    def first(self, initial: bytes | None) -> Step:
        # RFC 4616 §2: without an initial response the server sends an empty challenge.
        return Challenge(b"") if initial is None else self._parse(initial)

    def respond(self, text: str) -> Step:
        return self._parse(decode_response(text))

    def _parse(self, message: bytes) -> Credentials:
        parts = message.split(b"\0")
        if len(parts) != 3:
            raise SaslError("PLAIN message must be authzid NUL authcid NUL password "
                            "(RFC 4616 §2)")
        authzid, authcid, password = (_utf8(part, name) for part, name in
                                      zip(parts, ("authorization identity",
                                                  "authentication identity", "password")))
        if not authcid:
            raise SaslError("PLAIN: empty authentication identity")
        if not password:
            raise SaslError("PLAIN: empty password")
        if authzid and not self._same_identity(authzid, authcid):
            raise SaslError("PLAIN: authorization identity must be empty or the same as "
                            "the authentication identity")
        return Credentials(authcid, password, authzid)


class LoginExchange(Exchange):
    """SASL LOGIN: challenges `Username:` then `Password:`, each answered in base64."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._user: str | None = None

    def first(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"Username:")
        return self._take_user(initial)

    def respond(self, text: str) -> Step:
        data = decode_response(text)
        if self._user is None:
            return self._take_user(data)
        password = _utf8(data, "password")
        if not password:
            raise SaslError("LOGIN: empty password")
        return Credentials(self._user, password)

    def _take_user(self, data: bytes) -> Challenge:
        user = _utf8(data, "user name")
        if not user:
            raise SaslError("LOGIN: empty user name")
        self._user = user
        return Challenge(b"Password:")


def start(mechanism: str, initial: str | None, *,
          same_identity: Callable[[str, str], bool] = operator.eq
          ) -> tuple[Exchange, Step]:
    """Begin an exchange (RFC 5804 §2.1 AUTHENTICATE).

    Args:
        mechanism: the SASL mechanism name, any case.
        initial: the initial response as sent (base64), or None when absent. An empty
            string is an empty initial response, not an absent one.
        same_identity: for PLAIN, `(authzid, authcid) -> bool`: whether the authorization
            identity names the authenticated user (`PlainExchange`).

    Returns:
        The exchange and its first step.

    Raises:
        UnknownMechanism: not PLAIN or LOGIN.
        SaslAborted, SaslError: the initial response is `*` or not base64, or PLAIN's
            message is malformed.
    """
    kind = mechanism.upper()
    exchange: Exchange
    if kind == "PLAIN":
        exchange = PlainExchange(same_identity)
    elif kind == "LOGIN":
        exchange = LoginExchange()
    else:
        raise UnknownMechanism(f"unsupported SASL mechanism {mechanism!r} "
                               f"(offered: {' '.join(MECHANISMS)})")
    data = None if initial is None else decode_response(initial)
    return exchange, exchange.first(data)


__all__ = [
    "ABORT", "MECHANISMS", "Challenge", "Credentials", "Exchange", "LoginExchange",
    "PlainExchange", "SaslAborted", "SaslError", "Step", "UnknownMechanism",
    "decode_response", "start",
]
