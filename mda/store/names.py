"""Validation and canonical forms of the names the store keys on.

- Addresses (RFC 5321 §4.1.2): the local part is kept as given (it is case-sensitive by the
  RFC), the domain is lower-cased (RFC 5321 §2.4: domain names are case-insensitive).
- Subaddresses (RFC 5233 §1): `user+detail@dom` belongs to `user@dom`.
- Mailbox names: UTF-8, `/` separates hierarchy levels, `INBOX` in any case means INBOX
  (RFC 3501 §5.1).
- Sieve script names (RFC 5804 §1.6).
- Special-use attributes of mailboxes (RFC 6154 §2).
"""

from __future__ import annotations

import re
import unicodedata

from mda.store.errors import InvalidAddress, InvalidInput, InvalidMailboxName, InvalidScriptName

INBOX = "INBOX"
HIERARCHY_SEPARATOR = "/"

MAX_LOCAL_PART = 64  # octets, RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255  # octets, RFC 5321 §4.5.3.1.2
MAX_MAILBOX_NAME = 1000  # octets; IMAP servers commonly cap well below this
MAX_SCRIPT_NAME = 512  # octets; RFC 5804 requires support for at least 128 characters
MAX_SPECIAL_USE = 32  # octets, the width of mailboxes.special_use

#: RFC 6154 §2 attributes in their registered spelling (compared case-insensitively)
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent",
                "\\Trash")
#: the special-use mailboxes every new user gets besides INBOX (name, attribute)
DEFAULT_SPECIAL_MAILBOXES = (("Junk", "\\Junk"), ("Trash", "\\Trash"), ("Sent", "\\Sent"),
                             ("Drafts", "\\Drafts"), ("Archive", "\\Archive"))
_USE_ATTR = re.compile(r"\\[^\x00-\x20\x7f(){%*\"\\\]]+")

_LOCAL_ATOM = re.compile(r"[^\s\x00-\x1f\x7f()<>\[\]:;@\\,\"]+")
_LOCAL_QUOTED = re.compile(r'"(?:[^"\\\r\n\x00]|\\[\x20-\x7e])*"')
_ADDRESS_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]")


def normalize_address(text: str) -> str:
    """Validate a mail address and return its canonical form.

    The local part is kept byte for byte (RFC 5321 §2.4 lets only the receiving host decide
    about its case); the domain is lower-cased. Surrounding angle brackets and whitespace are
    removed, so `<Joe@Example.COM>` becomes `Joe@example.com`.

    Args:
        text: the address, e.g. from the command line or an LMTP RCPT TO.

    Returns:
        `local@domain` with the domain lower-cased.

    Raises:
        InvalidAddress: the text is not `local-part@domain` by RFC 5321 §4.1.2, or a part is
            longer than RFC 5321 §4.5.3.1 allows; the message says what is wrong.
    """
    value = text.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    if not value:
        raise InvalidAddress("empty address")
    if "@" not in value:
        raise InvalidAddress(f"{text!r} has no @domain")
    local, _, domain = value.rpartition("@")
    if not local:
        raise InvalidAddress(f"{text!r} has an empty local part")
    if not (_LOCAL_ATOM.fullmatch(local) or _LOCAL_QUOTED.fullmatch(local)) or ".." in local \
            or local.startswith(".") or local.endswith("."):
        raise InvalidAddress(f"{text!r}: invalid local part {local!r}")
    if len(local.encode("utf-8", "surrogateescape")) > MAX_LOCAL_PART:
        raise InvalidAddress(f"{text!r}: local part longer than {MAX_LOCAL_PART} octets")
    domain = domain.lower()
    if not domain:
        raise InvalidAddress(f"{text!r} has an empty domain")
    if len(domain.encode("utf-8", "surrogateescape")) > MAX_DOMAIN:
        raise InvalidAddress(f"{text!r}: domain longer than {MAX_DOMAIN} octets")
    if not _ADDRESS_LITERAL.fullmatch(domain):
        labels = domain.split(".")
        if any(not label or not _valid_label(label) for label in labels):
            raise InvalidAddress(f"{text!r}: invalid domain {domain!r}")
    return f"{local}@{domain}"


def _valid_label(label: str) -> bool:
    """A DNS label: letters (any script, for IDN), digits and inner hyphens, <= 63 octets."""
    if len(label.encode("utf-8", "surrogateescape")) > 63:
        return False
    if label.startswith("-") or label.endswith("-"):
        return False
    return all(ch == "-" or ch.isalnum() for ch in label)


def split_subaddress(address: str, delimiters: str) -> tuple[str, str | None]:
    """Split `user+detail@dom` into (`user@dom`, `detail`) (RFC 5233 §1, §4).

    The local part is cut at the first character that is one of `delimiters`. An address
    whose local part has no delimiter, or starts with one, is returned unchanged.

    Args:
        address: a canonical address (see `normalize_address`).
        delimiters: the characters that separate user and detail (may be empty: no split).

    Returns:
        (base address, detail or None when there is no subaddress).
    """
    local, _, domain = address.rpartition("@")
    if not delimiters or local.startswith('"'):
        return address, None
    for index, ch in enumerate(local):
        if ch in delimiters:
            if index == 0:
                return address, None
            return f"{local[:index]}@{domain}", local[index + 1:]
    return address, None


def normalize_mailbox_name(name: str) -> str:
    """Validate a mailbox name and return its canonical form.

    `INBOX` is case-insensitive (RFC 3501 §5.1) and canonically upper case, also as the first
    hierarchy level (`inbox/lists` becomes `INBOX/lists`). Names are NFC-normalised UTF-8.

    Args:
        name: the mailbox name, `/` separating hierarchy levels.

    Returns:
        The canonical name.

    Raises:
        InvalidMailboxName: empty, longer than 1000 octets, contains control characters, or
            has an empty hierarchy level (leading, trailing or doubled `/`).
    """
    value = unicodedata.normalize("NFC", name)
    if not value:
        raise InvalidMailboxName("empty mailbox name")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_MAILBOX_NAME:
        raise InvalidMailboxName(f"mailbox name longer than {MAX_MAILBOX_NAME} octets")
    if any(_is_control(ch) for ch in value):
        raise InvalidMailboxName(f"mailbox name {name!r} contains control characters")
    levels = value.split(HIERARCHY_SEPARATOR)
    if any(not level for level in levels):
        raise InvalidMailboxName(f"mailbox name {name!r} has an empty hierarchy level")
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    return HIERARCHY_SEPARATOR.join(levels)


def normalize_script_name(name: str) -> str:
    """Validate a Sieve script name (RFC 5804 §1.6).

    RFC 5804 §1.6: script names "MUST NOT contain" control characters (U+0000-U+001F,
    U+007F-U+009F), U+2028 or U+2029, and must not be empty.

    Args:
        name: the script name.

    Returns:
        The NFC-normalised name.

    Raises:
        InvalidScriptName: empty, longer than 512 octets or holding a forbidden character.
    """
    value = unicodedata.normalize("NFC", name)
    if not value:
        raise InvalidScriptName("empty script name")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_SCRIPT_NAME:
        raise InvalidScriptName(f"script name longer than {MAX_SCRIPT_NAME} octets")
    if any(_is_control(ch) or ch in "\u2028\u2029" for ch in value):
        raise InvalidScriptName(f"script name {name!r} contains a control character")
    return value


def normalize_special_use(attr: str) -> str:
    """Validate a special-use attribute (RFC 6154 §6 use-attr: `\\` and an IMAP atom).

    Attributes compare case-insensitively; the RFC 6154 §2 ones are returned in their
    registered spelling (`\\junk` becomes `\\Junk`), others as given.

    Args:
        attr: e.g. `\\Junk`.

    Returns:
        The canonical attribute.

    Raises:
        InvalidInput: not `\\` followed by an atom, or longer than 32 octets.
    """
    if not _USE_ATTR.fullmatch(attr):
        raise InvalidInput(f"{attr!r} is not a special-use attribute (RFC 6154 §6)")
    if len(attr.encode("utf-8")) > MAX_SPECIAL_USE:
        raise InvalidInput(f"special-use attribute {attr!r} is longer than "
                           f"{MAX_SPECIAL_USE} octets")
    return next((known for known in SPECIAL_USES if known.lower() == attr.lower()), attr)


def _is_control(ch: str) -> bool:
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF
