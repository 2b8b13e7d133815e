"""`mda.server.ListenAddress`: the three forms of `MDA_LMTP_LISTEN` and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mda.server import ListenAddress, ListenError, describe_database


@pytest.mark.parametrize("text,expected", [
    ("127.0.0.1:2424", ListenAddress(host="127.0.0.1", port=2424)),
    ("localhost:24", ListenAddress(host="localhost", port=24)),
    ("0.0.0.0:0", ListenAddress(host="0.0.0.0", port=0)),
    ("[::1]:2424", ListenAddress(host="::1", port=2424)),
    ("[::]:24", ListenAddress(host="::", port=24)),
    ("unix:/run/mda/lmtp", ListenAddress(path=Path("/run/mda/lmtp"))),
    ("unix:relative.sock", ListenAddress(path=Path("relative.sock"))),
])
def test_parse(text: str, expected: ListenAddress) -> None:
    assert ListenAddress.parse(text) == expected
    assert ListenAddress.parse(str(expected)) == expected


@pytest.mark.parametrize("text,reason", [
    ("2424", "host:port"),
    (":2424", "host:port"),
    ("127.0.0.1:", "port must be"),
    ("127.0.0.1:65536", "port must be"),
    ("127.0.0.1:-1", "port must be"),
    ("::1:2424", "host:port"),
    ("[::1]2424", "[v6address]:port"),
    ("[::1", "[v6address]:port"),
    ("unix:", "socket path"),
])
def test_bad_addresses(text: str, reason: str) -> None:
    with pytest.raises(ListenError, match=reason.replace("[", r"\[")):
        ListenAddress.parse(text)


def test_describe_database_gives_sqlite_file_as_absolute_path(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    assert describe_database("sqlite+aiosqlite:///rel/mda.sqlite3") == \
        f"sqlite {tmp_path / 'rel' / 'mda.sqlite3'}"


def test_describe_database_masks_the_password() -> None:
    text = describe_database("postgresql+asyncpg://mda:s3cret@db.example:5432/mail")
    assert "s3cret" not in text
    assert text.startswith("postgresql+asyncpg://mda:") and text.endswith("@db.example:5432/mail")
