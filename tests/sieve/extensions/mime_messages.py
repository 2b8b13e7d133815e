"""MIME messages shared by the mime, foreverypart and extracttext tests."""

from __future__ import annotations

#: multipart/mixed { text/plain (latin-1, QP), message/rfc822 { multipart/alternative
#: { text/plain, text/html } }, application/octet-stream (RFC 2231 filename) }
NESTED = (
    b"From: a@example.org\r\n"
    b"To: r@example.com\r\n"
    b"Subject: top\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=\"B1\"\r\n"
    b"\r\n"
    b"pre\r\n"
    b"--B1\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Gr=F6=DFe one\r\n"
    b"--B1\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: inner@example.net\r\n"
    b"Subject: inner\r\n"
    b"Content-Type: multipart/alternative; boundary=\"B2\"\r\n"
    b"\r\n"
    b"--B2\r\n"
    b"Content-Type: text/plain\r\n"
    b"\r\n"
    b"inner plain\r\n"
    b"--B2\r\n"
    b"Content-Type: text/html\r\n"
    b"\r\n"
    b"<p>inner <b>html</b></p>\r\n"
    b"--B2--\r\n"
    b"--B1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''f%C3%BC.bin\r\n"
    b"\r\n"
    b"xyz\r\n"
    b"--B1--\r\n"
    b"epi\r\n"
)

#: content types in the order foreverypart visits the parts of NESTED
NESTED_TYPES = ["multipart/mixed", "text/plain", "message/rfc822", "multipart/alternative",
                "text/plain", "text/html", "application/octet-stream"]

PLAIN = b"From: a@example.org\r\nTo: r@example.com\r\nSubject: plain\r\n\r\nJust text.\r\n"
