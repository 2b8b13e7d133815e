"""mda.passwords against hashes made by Dovecot's own `doveadm pw`, and Dovecot checking ours."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mda.passwords import (
    ARGON2_MAX_MEMORY_KIB,
    DUMMY_HASH,
    PasswordSchemeError,
    check_scheme,
    hash_password,
    needs_rehash,
    verify_password,
    verify_unknown_user,
)

PASSWORD = "Pässwörd mit Leerzeichen 🔑"
WRONG = ["Pässwörd mit Leerzeichen", "pässwörd mit leerzeichen 🔑", PASSWORD + " ", "", "x"]

#: scheme given to doveadm -> what check_scheme says of the hash
SCHEMES = {
    "ARGON2ID": "ARGON2ID",
    "ARGON2I": "ARGON2I",
    "SHA512-CRYPT": "SHA512-CRYPT",
    "SHA256-CRYPT": "SHA256-CRYPT",
    "BLF-CRYPT": "BLF-CRYPT",
    "PLAIN": "PLAIN",
    "CLEAR": "PLAIN",
    "CRYPT": "BLF-CRYPT",  # Debian's libxcrypt makes $2y$ for doveadm's CRYPT
}

Dovecot = Callable[..., str]


_HASHES: dict[tuple[str, str, int | None], str] = {}


@pytest.fixture
def doveadm(require_tool: Callable[[str], str]) -> str:
    """Path of Dovecot's doveadm (Debian dovecot-core)."""
    return require_tool("doveadm")


@pytest.fixture
def dovecot_hash(doveadm: str) -> Dovecot:
    """`doveadm pw -s SCHEME -p PASSWORD [-r ROUNDS]`: a hash made by Dovecot (cached for
    the session: each argon2 one costs a tenth of a second)."""

    def make(scheme: str, password: str = PASSWORD, rounds: int | None = None) -> str:
        key = (scheme, password, rounds)
        if key not in _HASHES:
            args = [doveadm, "pw", "-s", scheme, "-p", password]
            if rounds is not None:
                args += ["-r", str(rounds)]
            _HASHES[key] = subprocess.run(args, capture_output=True, text=True, check=True,
                                          timeout=60).stdout.strip()
        return _HASHES[key]

    return make


def dovecot_accepts(doveadm: str, stored: str, password: str) -> bool:
    """Dovecot's verdict: `doveadm pw -t HASH -p PASSWORD` exits 0 on a match."""
    proc = subprocess.run([doveadm, "pw", "-t", stored, "-p", password], capture_output=True,
                          timeout=60)
    return proc.returncode == 0


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_dovecot_hash_verifies_right_password_only(dovecot_hash: Dovecot, scheme: str) -> None:
    stored = dovecot_hash(scheme)
    assert stored.upper().startswith("{" + scheme + "}")
    assert check_scheme(stored) == SCHEMES[scheme]
    assert verify_password(stored, PASSWORD)
    for wrong in WRONG:
        assert not verify_password(stored, wrong), wrong
    assert needs_rehash(stored)


@pytest.mark.parametrize("scheme", ["ARGON2ID", "SHA512-CRYPT", "BLF-CRYPT", "PLAIN"])
def test_verdicts_match_dovecot(doveadm: str, dovecot_hash: Dovecot, scheme: str) -> None:
    stored = dovecot_hash(scheme)
    for candidate in [PASSWORD, *WRONG[:3]]:
        assert verify_password(stored, candidate) == dovecot_accepts(doveadm, stored,
                                                                     candidate), candidate


def test_blf_crypt_is_written_as_2y_and_counts_72_bytes(doveadm: str,
                                                        dovecot_hash: Dovecot) -> None:
    long = "é" * 50  # 100 UTF-8 bytes; bcrypt reads the first 72
    stored = dovecot_hash("BLF-CRYPT", long)
    assert stored.startswith("{BLF-CRYPT}$2y$")
    assert verify_password(stored, long)
    assert verify_password(stored, "é" * 36) == dovecot_accepts(doveadm, stored, "é" * 36)
    assert verify_password(stored, "é" * 36)
    assert not verify_password(stored, "é" * 35)


def test_sha_crypt_with_explicit_rounds(dovecot_hash: Dovecot) -> None:
    for scheme in ("SHA512-CRYPT", "SHA256-CRYPT"):
        stored = dovecot_hash(scheme, rounds=12000)
        assert "$rounds=12000$" in stored
        assert check_scheme(stored) == scheme
        assert verify_password(stored, PASSWORD)
        assert not verify_password(stored, WRONG[0])


def test_scheme_names_are_case_insensitive_and_crypt_forms_need_no_prefix(
        dovecot_hash: Dovecot) -> None:
    sha = dovecot_hash("SHA512-CRYPT")
    body = sha.partition("}")[2]
    for stored in (f"{{sha512-crypt}}{body}", f"{{CRYPT}}{body}", body):
        assert check_scheme(stored) == "SHA512-CRYPT"
        assert verify_password(stored, PASSWORD)
        assert not verify_password(stored, WRONG[0])
    bcrypt_body = dovecot_hash("BLF-CRYPT").partition("}")[2]
    assert check_scheme(bcrypt_body) == "BLF-CRYPT" and verify_password(bcrypt_body, PASSWORD)
    assert verify_password("{plain}" + PASSWORD, PASSWORD)
    assert verify_password("{Clear}" + PASSWORD, PASSWORD)


def test_our_hashes_are_argon2id_current_and_dovecot_accepts_them(doveadm: str) -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$")
    assert check_scheme(stored) == "ARGON2ID"
    assert not needs_rehash(stored)
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, WRONG[0])
    assert hash_password(PASSWORD) != stored  # a fresh salt every time
    assert dovecot_accepts(doveadm, stored, PASSWORD)
    assert not dovecot_accepts(doveadm, stored, WRONG[0])


def test_dovecot_argon2id_with_other_parameters_needs_rehash(dovecot_hash: Dovecot) -> None:
    stored = dovecot_hash("ARGON2ID")
    assert ",p=4$" not in stored  # Dovecot's parameters differ from ours
    assert needs_rehash(stored)
    assert verify_password(stored, PASSWORD)


def test_dummy_hash_is_current_and_unknown_user_costs_a_real_verification() -> None:
    assert check_scheme(DUMMY_HASH) == "ARGON2ID"
    assert not needs_rehash(DUMMY_HASH)
    stored = hash_password(PASSWORD)

    def fastest(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    real = fastest(lambda: verify_password(stored, WRONG[0]))
    unknown = fastest(lambda: verify_unknown_user(WRONG[0]))
    assert verify_unknown_user(PASSWORD) is False
    assert unknown >= 0.5 * real, (unknown, real)
    assert fastest(lambda: verify_password("{PLAIN}x", "y")) < 0.1 * unknown


@pytest.mark.parametrize(("stored", "reason"), [
    ("{MD5}1a1dc91c907325c69271ddf0c944bc72", "unknown password scheme {MD5}"),
    ("{SSHA512}abc", "unknown password scheme {SSHA512}"),
    ("{PLAIN", "unterminated {SCHEME} prefix"),
    ("{PLAIN}", "empty PLAIN password"),
    ("secret", "no {SCHEME} prefix"),
    ("$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0", "MD5-CRYPT"),
    ("{CRYPT}$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0", "MD5-CRYPT"),
    ("{CRYPT}abJnggxhB/yWI", "DES-CRYPT"),
    ("$y$j9T$salt$hash", "yescrypt"),
    ("$9$x", "unknown crypt(3) hash type $9$"),
    ("{SHA512-CRYPT}$6$salt$tooshort", "checksum has 8 characters, expected 86"),
    ("{SHA512-CRYPT}$5$salt$" + "a" * 43, "expected $6$"),
    ("{SHA256-CRYPT}$5$rounds=10$salt$" + "a" * 43, "rounds=10 is outside"),
    ("{BLF-CRYPT}$2y$05$short", "53 characters"),
    ("{BLF-CRYPT}$2y$32$" + "a" * 53, "cost 32 is outside"),
    ("{ARGON2I}$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
     "does not start with $argon2i$"),
    ("{ARGON2ID}$argon2id$v=19$garbage", "bad parameters"),
    (f"{{ARGON2ID}}$argon2id$v=19$m={ARGON2_MAX_MEMORY_KIB * 4},t=3,p=1$c2FsdHNhbHQ"
     f"$aGFzaGhhc2g", "more than"),
])
def test_bad_stored_forms_are_refused_with_a_reason(stored: str, reason: str) -> None:
    with pytest.raises(PasswordSchemeError) as info:
        check_scheme(stored)
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(PasswordSchemeError):
        verify_password(stored, "secret")
    assert needs_rehash(stored)


def test_passwords_that_cannot_match() -> None:
    with pytest.raises(ValueError, match="empty password"):
        hash_password("")
    with pytest.raises(ValueError, match="not valid Unicode"):
        hash_password("bad \udc80 surrogate")
    assert not verify_password("{PLAIN}bad \udc80", "bad \udc80")
    assert not verify_password("{PLAIN}abc", "abcd")
    assert not verify_password("{PLAIN}abcd", "abc")
    sha = "{SHA256-CRYPT}$5$saltsaltsaltsalt$" + "a" * 43
    assert not verify_password(sha, "nul\x00inside")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(password=st.text(st.characters(blacklist_characters="\0"), min_size=1, max_size=40),
       other=st.text(min_size=1, max_size=40))
def test_round_trip_for_any_unicode_password(password: str, other: str) -> None:
    stored = hash_password(password)
    assert verify_password(stored, password)
    assert verify_password(stored, other) == (other == password)


@pytest.mark.parametrize(("password", "reason"), [
    ("", "empty password"),
    ("a\0b", "NUL character"),
    ("x" * 1025, "longer than 1024 octets"),
    ("\u00e9" * 513, "longer than 1024 octets"),  # 1026 octets in UTF-8
])
def test_new_passwords_that_could_never_log_in_are_refused(password: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        hash_password(password)
    assert verify_password(hash_password("x" * 1024), "x" * 1024)
