"""A throw-away certificate authority and server certificate for STARTTLS tests.

`make_test_pki(directory)` writes, with the `cryptography` package:

- `ca.pem`: a self-signed CA certificate (the trust anchor clients are given),
- `server.pem` and `server.key`: a server certificate signed by that CA for the names
  `localhost` and the address `127.0.0.1` (subjectAltName, RFC 5280 §4.2.1.6; RFC 6125
  clients check those, never the CN), valid for a day, with extendedKeyUsage serverAuth.

Clients that verify (Python's `ssl`, IO::Socket::SSL in sieve-connect) accept the server
only when given `ca.pem`, so a test that passes proves the server sent the configured
chain, not merely that some TLS handshake happened.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TestPKI:
    """Paths of the files `make_test_pki` wrote.

    Attributes:
        ca_file: PEM of the CA certificate (give it to clients as their trust anchor).
        cert_file: PEM of the server certificate (`MDA_TLS_CERT`).
        key_file: PEM of the server's private key, unencrypted PKCS#8 (`MDA_TLS_KEY`).
    """

    __test__ = False  # not a test class, despite the name

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_settings(self) -> dict[str, str]:
        """The `MDA_*` settings that give `mda serve` this certificate."""
        return {"MDA_TLS_CERT": str(self.cert_file), "MDA_TLS_KEY": str(self.key_file)}


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mda tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_test_pki(directory: Path) -> TestPKI:
    """Create a CA and a server certificate for 127.0.0.1 / localhost in `directory`.

    Args:
        directory: an existing directory; `ca.pem`, `server.pem` and `server.key` are
            written (overwritten) there.

    Returns:
        The paths, as a `TestPKI`.
    """
    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mda test CA"))
        .issuer_name(_name("mda test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    pki = TestPKI(ca_file=directory / "ca.pem", cert_file=directory / "server.pem",
                  key_file=directory / "server.key")
    pki.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    pki.key_file.chmod(0o600)
    return pki


@pytest.fixture
def test_pki(tmp_path: Path) -> TestPKI:
    """A fresh CA and server certificate in the test's temp dir (see `make_test_pki`)."""
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_test_pki(directory)
