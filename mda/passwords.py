"""User passwords: hashing new ones with argon2id, verifying Dovecot's stored forms.

A stored password is a Dovecot-style string, `{SCHEME}encoded`, so that a Dovecot
passwd-file can be carried over as it is and mda's own hashes read the same way:

| scheme | encoded form | verified with |
| --- | --- | --- |
| `ARGON2ID` (what mda writes) | `$argon2id$v=19$m=...,t=...,p=...$salt$hash` | argon2-cffi |
| `ARGON2I` | `$argon2i$v=19$...` | argon2-cffi |
| `SHA512-CRYPT` | `$6$[rounds=N$]salt$hash` | libpass (SHA-crypt) |
| `SHA256-CRYPT` | `$5$[rounds=N$]salt$hash` | libpass (SHA-crypt) |
| `BLF-CRYPT` | `$2y$NN$...` (also `$2a$`, `$2b$`) | bcrypt (pyca) |
| `PLAIN`, `CLEAR` | the password itself | constant-time comparison |
| `CRYPT` | one of the crypt(3) forms above | the matching scheme |

Scheme names are case-insensitive, as in Dovecot (`{plain}` is `{PLAIN}`). A hash without a
`{SCHEME}` prefix is taken as `CRYPT` (Dovecot's default for passwd-files) when it has one of
the crypt(3) forms above. Passwords are compared as their UTF-8 bytes, without Unicode
normalisation, like Dovecot. For `BLF-CRYPT` only the first 72 bytes count (the bcrypt
algorithm's limit, which Dovecot's crypt(3) applies too).

Cost: `hash_password` and verifying an argon2 hash take about 0.1 s of CPU and 64 MiB of
memory each (RFC 9106 §4, the second recommended option: t=3, m=64 MiB, p=4). Call
them from a worker thread in async code (`await asyncio.to_thread(verify_password, stored,
password)`); argon2-cffi releases the GIL while hashing.

A stored argon2 hash may ask for at most `ARGON2_MAX_MEMORY_KIB` (1 GiB); a larger one is
refused as malformed rather than letting one login take the server's memory.

Login for a user that does not exist, or has no password: call `verify_unknown_user`, which
spends the same time as a real verification and returns False, so that the reply time does
not tell an attacker which addresses exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

import argon2
import bcrypt
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from passlib.exc import PasswordValueError
from passlib.hash import sha256_crypt, sha512_crypt

__all__ = [
    "ARGON2_MAX_MEMORY_KIB", "CURRENT_SCHEME", "DUMMY_HASH", "SCHEMES", "PasswordSchemeError",
    "check_scheme", "hash_password", "needs_rehash", "verify_password", "verify_unknown_user",
]

#: The scheme `hash_password` writes.
CURRENT_SCHEME: Final = "ARGON2ID"

#: Every scheme `verify_password` accepts, as written in the `{SCHEME}` prefix (any case).
SCHEMES: Final = frozenset({"ARGON2ID", "ARGON2I", "SHA512-CRYPT", "SHA256-CRYPT",
                            "BLF-CRYPT", "PLAIN", "CLEAR", "CRYPT"})

_HASHER: Final = argon2.PasswordHasher.from_parameters(argon2.profiles.RFC_9106_LOW_MEMORY)

#: An argon2id hash with the current parameters, of a password nobody knows: what
#: `verify_unknown_user` verifies against. A test keeps it in step with `_HASHER`.
DUMMY_HASH: Final = ("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$"
                     "rR4U+JwGv85g4KMOErvgaw$ZAwzwgqFM7H6pfdYrxrw2KnpR9cXw3ChNPc0kfIpzxg")

_BCRYPT_MAX_BYTES: Final = 72
#: The most memory an argon2 hash may ask for, KiB: a larger one (an imported hash with
#: m=4194304, say) would let one login take the server's memory.
ARGON2_MAX_MEMORY_KIB: Final = 1024 * 1024
_CRYPT64 = "./0-9A-Za-z"
_SHA_CRYPT = re.compile(
    rf"\$(?P<id>[56])\$(?:rounds=(?P<rounds>[0-9]+)\$)?(?P<salt>[{_CRYPT64}]{{0,16}})"
    rf"\$(?P<checksum>[{_CRYPT64}]*)")
_SHA_CRYPT_LENGTH = {"5": 43, "6": 86}  # checksum characters
_BCRYPT = re.compile(rf"\$2[aby]\$(?P<cost>[0-9]{{2}})\$[{_CRYPT64}]{{53}}")
_CRYPT_FORMS = (("$6$", "SHA512-CRYPT"), ("$5$", "SHA256-CRYPT"), ("$2a$", "BLF-CRYPT"),
                ("$2b$", "BLF-CRYPT"), ("$2y$", "BLF-CRYPT"))
_UNSUPPORTED_CRYPT = (("$1$", "MD5-CRYPT"), ("$y$", "yescrypt"), ("$7$", "scrypt"),
                      ("$gy$", "gost-yescrypt"), ("$sha1$", "SHA1-CRYPT"),
                      ("$argon2", "argon2 without an {ARGON2ID}/{ARGON2I} prefix"))


class PasswordSchemeError(ValueError):
    """A stored password is in a scheme mda does not support, or is malformed for its scheme.

    The message names the scheme and says what is wrong, e.g. `unknown password scheme
    {MD5}` or `malformed SHA512-CRYPT hash: checksum has 80 characters, expected 86`.
    """


MAX_PASSWORD = 1024
"""Octets a new password may have (UTF-8); far beyond any real one, and it bounds the work."""


def hash_password(password: str) -> str:
    """Hash a new password with argon2id (RFC 9106) in Dovecot's form.

    CPU- and memory-heavy (see the module text): run it in a thread from async code.

    Args:
        password: the password; any Unicode text, hashed as UTF-8.

    Returns:
        `{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>` with a fresh random salt.

    Raises:
        ValueError: the password is empty, holds a NUL (SASL PLAIN, RFC 4616 §2, could never
            carry it), is longer than `MAX_PASSWORD` octets, or is not encodable as UTF-8
            (lone surrogates).
    """
    if not password:
        raise ValueError("empty password")
    if "\0" in password:
        raise ValueError("the password holds a NUL character, which SASL PLAIN cannot carry "
                         "(RFC 4616 §2)")
    encoded = _utf8(password)
    if len(encoded) > MAX_PASSWORD:
        raise ValueError(f"password longer than {MAX_PASSWORD} octets")
    return "{" + CURRENT_SCHEME + "}" + _HASHER.hash(encoded)


def verify_password(stored: str, password: str) -> bool:
    """Check a password against a stored hash, comparing in constant time.

    CPU- and memory-heavy for argon2 hashes (see the module text): run it in a thread from
    async code.

    Args:
        stored: the stored password, `{SCHEME}encoded` (see the module text for the schemes
            and the unprefixed crypt(3) forms).
        password: the password the user gave.

    Returns:
        True when the password matches. A password that cannot match the scheme's input
        (not encodable as UTF-8; a NUL character for a crypt(3) scheme) is False.

    Raises:
        PasswordSchemeError: unknown scheme or malformed hash; the message names the scheme.
    """
    scheme, encoded = _parse(stored)
    try:
        secret = _utf8(password)
    except ValueError:
        return False
    if scheme == "PLAIN":
        # Compare digests so that neither the content nor the length leaks through timing.
        return hmac.compare_digest(hashlib.sha256(secret).digest(),
                                   hashlib.sha256(_utf8(encoded)).digest())
    if scheme in ("ARGON2ID", "ARGON2I"):
        try:
            return _HASHER.verify(encoded, secret)
        except VerifyMismatchError:
            return False
        except InvalidHashError as exc:
            raise PasswordSchemeError(f"malformed {scheme} hash") from exc
        except VerificationError:  # e.g. a hash whose parameters libargon2 refuses
            return False
    if b"\x00" in secret:  # crypt(3) takes a C string: Dovecot could never have set this
        return False
    if scheme == "BLF-CRYPT":
        return bcrypt.checkpw(secret[:_BCRYPT_MAX_BYTES], encoded.encode("ascii"))
    handler = sha512_crypt if scheme == "SHA512-CRYPT" else sha256_crypt
    try:
        return handler.verify(secret, encoded)
    except PasswordValueError:  # longer than libpass's limit of 4096 bytes
        return False


def verify_unknown_user(password: str) -> bool:
    """Spend the time of a real login on a user that does not exist (or has no password).

    Verifies `password` against `DUMMY_HASH`, whose parameters are those of
    `hash_password`, so the reply takes as long as for an existing user and does not reveal
    which addresses exist. CPU-heavy like `verify_password`: run it in a thread.

    Args:
        password: the password the client gave.

    Returns:
        Always False.
    """
    verify_password(DUMMY_HASH, password)
    return False


def needs_rehash(stored: str) -> bool:
    """Whether a stored password should be replaced by a fresh `hash_password` hash.

    Args:
        stored: the stored password (any form, valid or not).

    Returns:
        False only for an `{ARGON2ID}` hash with mda's current parameters; True for every
        other scheme (including Dovecot's argon2id hashes with other parameters) and for a
        malformed or unknown one. After a successful login with the plain password at hand,
        the caller may store `hash_password(password)` instead.
    """
    try:
        scheme, encoded = _parse(stored)
    except PasswordSchemeError:
        return True
    if scheme != CURRENT_SCHEME:
        return True
    try:
        return _HASHER.check_needs_rehash(encoded)
    except (InvalidHashError, ValueError):
        return True


def check_scheme(stored: str) -> str:
    """Validate the form of a stored password, e.g. one imported from a Dovecot passwd-file.

    Checks what can be checked without the password: a known scheme, and an encoding of
    the right shape for it (argon2 parameters, SHA-crypt salt and checksum lengths, bcrypt
    cost and length). `{CRYPT}` and unprefixed hashes are resolved to the crypt(3) scheme
    their `$id$` names.

    Args:
        stored: the stored password, `{SCHEME}encoded` or an unprefixed crypt(3) hash.

    Returns:
        The scheme that verifies it, upper case: `ARGON2ID`, `ARGON2I`, `SHA512-CRYPT`,
        `SHA256-CRYPT`, `BLF-CRYPT` or `PLAIN` (for `{CLEAR}` too).

    Raises:
        PasswordSchemeError: unknown or unsupported scheme, or a malformed hash; the
            message says which and why.
    """
    return _parse(stored)[0]


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"password is not valid Unicode text: {exc.reason}") from None


def _parse(stored: str) -> tuple[str, str]:
    """Split and validate a stored password into (scheme, encoded); see `check_scheme`."""
    if stored.startswith("{"):
        end = stored.find("}")
        if end < 0:
            raise PasswordSchemeError("unterminated {SCHEME} prefix (no closing brace)")
        given, encoded = stored[1:end], stored[end + 1:]
        scheme = given.upper()
        if scheme not in SCHEMES:
            raise PasswordSchemeError(f"unknown password scheme {{{given}}} (mda supports "
                                      f"{', '.join(sorted(SCHEMES))})")
    else:
        scheme, encoded = "CRYPT", stored
        if not stored.startswith("$"):
            raise PasswordSchemeError("no {SCHEME} prefix, and not a crypt(3) hash "
                                      "($6$, $5$ or $2y$)")
    if scheme == "CRYPT":
        scheme = _crypt_scheme(encoded)
    elif scheme == "CLEAR":
        scheme = "PLAIN"
    _check_encoding(scheme, encoded)
    return scheme, encoded


def _crypt_scheme(encoded: str) -> str:
    for prefix, scheme in _CRYPT_FORMS:
        if encoded.startswith(prefix):
            return scheme
    for prefix, name in _UNSUPPORTED_CRYPT:
        if encoded.startswith(prefix):
            raise PasswordSchemeError(f"unsupported crypt(3) hash: {name} (mda supports "
                                      f"SHA512-CRYPT $6$, SHA256-CRYPT $5$, BLF-CRYPT $2y$)")
    if encoded.startswith("$"):
        ident = encoded[1:].split("$", 1)[0]
        raise PasswordSchemeError(f"unknown crypt(3) hash type ${ident}$ (mda supports "
                                  f"SHA512-CRYPT $6$, SHA256-CRYPT $5$, BLF-CRYPT $2y$)")
    raise PasswordSchemeError("unsupported crypt(3) hash: DES-CRYPT (mda supports "
                              "SHA512-CRYPT $6$, SHA256-CRYPT $5$, BLF-CRYPT $2y$)")


def _check_encoding(scheme: str, encoded: str) -> None:
    if scheme == "PLAIN":
        if not encoded:
            raise PasswordSchemeError("empty PLAIN password")
        return
    if scheme in ("ARGON2ID", "ARGON2I"):
        variant = f"${scheme.lower()}$"
        if not encoded.startswith(variant):
            raise PasswordSchemeError(f"malformed {scheme} hash: does not start with {variant}")
        try:
            parameters = argon2.extract_parameters(encoded)
        except (InvalidHashError, ValueError) as exc:
            raise PasswordSchemeError(f"malformed {scheme} hash: bad parameters or "
                                      f"encoding") from exc
        if parameters.memory_cost > ARGON2_MAX_MEMORY_KIB:
            raise PasswordSchemeError(
                f"{scheme} hash asks for m={parameters.memory_cost} KiB of memory, more than "
                f"the {ARGON2_MAX_MEMORY_KIB} KiB mda allows")
        return
    if scheme == "BLF-CRYPT":
        match = _BCRYPT.fullmatch(encoded)
        if match is None:
            raise PasswordSchemeError("malformed BLF-CRYPT hash: expected $2y$NN$ and 53 "
                                      "characters of salt and hash")
        if not 4 <= int(match["cost"]) <= 31:
            raise PasswordSchemeError(f"malformed BLF-CRYPT hash: cost {match['cost']} is "
                                      f"outside 04..31")
        return
    match = _SHA_CRYPT.fullmatch(encoded)
    expected_id = "6" if scheme == "SHA512-CRYPT" else "5"
    if match is None or match["id"] != expected_id:
        raise PasswordSchemeError(f"malformed {scheme} hash: expected "
                                  f"${expected_id}$[rounds=N$]salt$checksum")
    want = _SHA_CRYPT_LENGTH[expected_id]
    if len(match["checksum"]) != want:
        raise PasswordSchemeError(f"malformed {scheme} hash: checksum has "
                                  f"{len(match['checksum'])} characters, expected {want}")
    if match["rounds"] is not None and not 1000 <= int(match["rounds"]) <= 999_999_999:
        raise PasswordSchemeError(f"malformed {scheme} hash: rounds={match['rounds']} is "
                                  f"outside 1000..999999999")
