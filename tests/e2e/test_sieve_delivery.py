"""The Sieve engine through a real `mda serve`: users and scripts made with the real CLI, the
administrator's before.d/after.d/default.sieve and global include scripts as files, messages
over LMTP, the result read back with `mda message list/show` and `mda mailbox list`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import ServerProcess, write
from tests.lmtp import statuscodes as S

Run = Callable[..., subprocess.CompletedProcess[bytes]]


def message(subject: str, *, message_id: str, extra: bytes = b"") -> bytes:
    return (b"From: Alice <alice@example.net>\r\nTo: team@example.org\r\n" + extra
            + f"Subject: {subject}\r\nMessage-ID: <{message_id}>\r\n\r\n".encode()
            + b"Hello from the e2e test.\r\n")


def cli_json(mda: Run, *args: str):
    return json.loads(mda(*args, "--json", check=True).stdout)


def global_script(tmp_path: Path, relative: str, source: str) -> None:
    """Write an administrator's script under the server's MDA_SIEVE_SCRIPTS_DIR."""
    path = tmp_path / "sieve_scripts" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def user_with_script(mda: Run, tmp_path: Path, address: str, source: str | None = None,
                     name: str = "main", activate: bool = True, add: bool = True) -> None:
    """Add the user (unless `add` is False) and store a script for it through the CLI."""
    if add:
        mda("user", "add", address, check=True)
    if source is not None:
        file = write(tmp_path, f"{address}-{name}.sieve", source)
        mda("sieve", "put", address, name, file, *(["--activate"] if activate else []),
            check=True)


async def deliver(server: ServerProcess, rcpts: list[str], data: bytes) -> list[str]:
    client = await server.client()
    try:
        result = await client.transaction("alice@example.net", rcpts, data)
    finally:
        await client.quit()
    assert [r.status for r in result.rcpt] == [S.RCPT_OK] * len(rcpts), result.rcpt
    return [r.status for r in result.after_data]


def stored(mda: Run, address: str) -> list[tuple[str, list[str]]]:
    """(mailbox, flags) of each stored message, in listing order."""
    return [(m["mailbox"], m["flags"]) for m in cli_json(mda, "message", "list", address)]


def shown(mda: Run, address: str, mailbox: str, uid: int = 1) -> bytes:
    return mda("message", "show", address, mailbox, str(uid), check=True).stdout


async def test_before_after_default_and_includes(mda: Run, start_server,
                                                 tmp_path: Path) -> None:
    mda("db", "upgrade", check=True)
    global_script(tmp_path, "before.d/10-screen.sieve",
                  'require "imap4flags";\naddflag "$Screened";\n')
    global_script(tmp_path, "before.d/20-broken.sieve", "if true {\n")  # skipped, logged
    global_script(tmp_path, "default.sieve",
                  'require ["fileinto", "copy", "mailbox"];\nfileinto :copy :create "Default";\n')
    global_script(tmp_path, "after.d/10-after.sieve",
                  'require ["fileinto", "copy", "mailbox"];\nfileinto :copy :create "After";\n')
    global_script(tmp_path, "global/offers.sieve",
                  'require "fileinto";\nif header :contains "subject" "offer" '
                  '{ fileinto "Junk"; }\n')
    user_with_script(mda, tmp_path, "plain@example.org")
    user_with_script(mda, tmp_path, "filer@example.org",
                     'require "fileinto";\nfileinto "Archive";\n')
    user_with_script(mda, tmp_path, "includer@example.org",
                     'require "imap4flags";\naddflag "$Helped";\n', name="helper",
                     activate=False)
    user_with_script(mda, tmp_path, "includer@example.org",
                     'require "include";\ninclude :personal "helper";\n'
                     'include :global "offers";\n', add=False)
    server = start_server()
    rcpts = ["plain@example.org", "filer@example.org", "includer@example.org"]
    assert await deliver(server, rcpts, message("Special offer", message_id="m1@x")) == \
        [S.DELIVERED] * 3

    # no active script: before.d, default.sieve, and after.d (the keep was still in effect)
    assert sorted(stored(mda, "plain@example.org")) == [
        ("After", ["$Screened"]), ("Default", ["$Screened"]), ("INBOX", ["$Screened"])]
    # the user's fileinto cancelled the implicit keep: after.d did not run
    assert stored(mda, "filer@example.org") == [("Archive", ["$Screened"])]
    # include :personal added a flag, include :global filed into Junk
    assert stored(mda, "includer@example.org") == [("Junk", ["$Helped", "$Screened"])]
    server.wait_for_log(r"20-broken\.sieve does not compile: line 2")
    assert cli_json(mda, "sieve", "errors", "plain@example.org") == []


async def test_duplicate_is_recorded_only_for_a_delivery_that_committed(
        mda: Run, start_server, tmp_path: Path) -> None:
    mda("db", "upgrade", check=True)
    user_with_script(mda, tmp_path, "dup@example.org",
                     'require ["duplicate", "fileinto"];\n'
                     'if duplicate { fileinto "Trash"; }\n')
    mda("user", "set-quota", "dup@example.org", "--storage", "100", check=True)
    server = start_server()
    first = message("Report", message_id="dup-1@example.net")
    assert await deliver(server, ["dup@example.org"], first) == [S.OVER_QUOTA]
    mda("user", "set-quota", "dup@example.org", "--storage", "none", check=True)
    assert await deliver(server, ["dup@example.org"], first) == [S.DELIVERED]
    assert await deliver(server, ["dup@example.org"], first) == [S.DELIVERED]
    other = message("Report", message_id="dup-2@example.net")
    assert await deliver(server, ["dup@example.org"], other) == [S.DELIVERED]
    assert [mailbox for mailbox, _ in stored(mda, "dup@example.org")] == \
        ["INBOX", "INBOX", "Trash"]
    trashed = shown(mda, "dup@example.org", "Trash")
    assert b"Message-ID: <dup-1@example.net>" in trashed


async def test_editheader_specialuse_and_spamtest(mda: Run, start_server,
                                                  tmp_path: Path) -> None:
    mda("db", "upgrade", check=True)
    user_with_script(mda, tmp_path, "joe@example.org", (
        'require ["editheader", "fileinto", "special-use", "spamtest", "relational",\n'
        '         "comparator-i;ascii-numeric"];\n'
        'addheader "X-Filtered" "by mda";\n'
        'deleteheader "X-Remove-Me";\n'
        'if spamtest :value "ge" :comparator "i;ascii-numeric" "5" {\n'
        '    fileinto :specialuse "\\\\Junk" "Spam";\n'
        '}\n'))
    server = start_server(MDA_SPAMTEST_HEADER="X-Spam-Score: score=(-?[0-9]+(\\.[0-9]+)?)",
                          MDA_SPAMTEST_MAX="10")
    spam = message("Cheap pills", message_id="s1@x",
                   extra=b"X-Spam-Score: score=8.2\r\nX-Remove-Me: yes\r\n")
    ham = message("Lunch?", message_id="h1@x", extra=b"X-Spam-Score: score=1.0\r\n")
    assert await deliver(server, ["joe@example.org"], spam) == [S.DELIVERED]
    assert await deliver(server, ["joe@example.org"], ham) == [S.DELIVERED]
    assert [mailbox for mailbox, _ in stored(mda, "joe@example.org")] == ["INBOX", "Junk"]

    junk = shown(mda, "joe@example.org", "Junk")
    header = junk.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nX-Filtered: by mda\r\n" in header
    assert b"X-Remove-Me" not in junk
    assert junk.startswith(b"Return-Path: <alice@example.net>\r\n")  # ours, above the edit
    assert junk.endswith(b"\r\n\r\nHello from the e2e test.\r\n")
    inbox = shown(mda, "joe@example.org", "INBOX")
    assert b"\r\nX-Filtered: by mda\r\n" in inbox and b"Subject: Lunch?" in inbox

    listed = {b["name"]: b for b in cli_json(mda, "mailbox", "list", "joe@example.org")}
    assert (listed["Junk"]["special_use"], listed["Junk"]["messages"]) == ("\\Junk", 1)
    assert "Spam" not in listed
    quota = cli_json(mda, "quota", "show", "joe@example.org")
    assert quota["storage_used"] == len(junk) + len(inbox)
