"""`mda sieve check FILE` and `mda sieve test SCRIPT MESSAGE`: offline script tools.

Both work on files only and never touch the database.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click

from mda.cli import CLIError, load_settings, sieve
from mda.sieve import SieveCompileError, compile_script
from mda.sieve.addresses import parse_address
from mda.sieve.dryrun import describe, dry_run_result
from mda.sieve_config import sieve_environment, sieve_limits


def _read(path: str, what: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read {what} {path}: {exc.strerror}") from None


def envelope_address(text: str | None, option: str, *, null_ok: bool) -> str | None:
    """Check an envelope address given on the command line (RFC 5321 §4.1.2 path).

    Args:
        text: the option's value; None when not given.
        option: the option's name, for the message.
        null_ok: the empty string (or `<>`) means the null sender and is allowed.

    Returns:
        None when not given, "" for the null sender, else `local@domain` (angle brackets
        removed).

    Raises:
        CLIError: not a single `local@domain` address (a display name, spaces, no domain...).
    """
    if text is None:
        return None
    value = text.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    if not value and null_ok:
        return ""
    parsed = parse_address(value) if "<" not in value else None
    if parsed is None or value.rpartition("@")[2] != parsed.domain:
        null = ', or "" for the null sender' if null_ok else ""
        raise CLIError(f"{option}: not an envelope address: {text!r} (use local@domain{null})")
    return value


@dataclass(frozen=True)
class ScriptDirs:
    """Included scripts from files: `<dir>/<name>.sieve` (RFC 6609 §3.2 locations).

    Attributes:
        personal: the directory of the user's scripts (`include :personal`).
        global_: the directory of the administrator's scripts (`include :global`).
    """

    personal: Path
    global_: Path

    def __call__(self, name: str, location: str) -> bytes | None:
        """The script's bytes, or None if there is no such file (or it cannot be read)."""
        folder = self.global_ if location == "global" else self.personal
        try:
            return (folder / f"{name}.sieve").read_bytes()
        except OSError:
            return None


@sieve.command("check")
@click.argument("file")
def check(file: str) -> None:
    """Compile FILE; exit non-zero with `line L, column C: <message>` if it is invalid."""
    try:
        compile_script(_read(file, "script"), limits=sieve_limits(load_settings()))
    except SieveCompileError as exc:
        raise CLIError(str(exc)) from None
    click.echo(f"{file}: ok")


@sieve.command("test")
@click.argument("script")
@click.argument("message")
@click.option("--envelope-from", "envelope_from", default=None,
              help='Envelope sender ("" for the null sender <>); default the From address.')
@click.option("--envelope-to", "envelope_to", default=None,
              help="Envelope recipient; default the first To address.")
@click.option("--mailbox", "mailboxes", multiple=True,
              help="A mailbox that exists (repeatable; INBOX always exists).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--personal-dir", "personal_dir", default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where `include :personal` finds NAME.sieve; default the script's "
                   "directory. `include :global` uses the settings' sieve_scripts/global/.")
@click.option("--before", "before", multiple=True,
              help="A script run before SCRIPT, like sieve_before (repeatable, in order).")
@click.option("--after", "after", multiple=True,
              help="A script run after SCRIPT, like sieve_after (repeatable, in order).")
def test(script: str, message: str, envelope_from: str | None, envelope_to: str | None,
         mailboxes: tuple[str, ...], as_json: bool, personal_dir: Path | None,
         before: tuple[str, ...], after: tuple[str, ...]) -> None:
    """Dry-run SCRIPT on MESSAGE (like sieve-test): list the actions, store nothing."""
    envelope_from = envelope_address(envelope_from, "--envelope-from", null_ok=True)
    envelope_to = envelope_address(envelope_to, "--envelope-to", null_ok=False)
    if personal_dir is None:
        personal_dir = Path(script).resolve().parent if script != "-" else Path.cwd()
    settings = load_settings()
    environment = sieve_environment(settings, now=datetime.now(timezone.utc),
                                    script_name=Path(script).stem if script != "-" else "")
    report, result = dry_run_result(
        _read(script, "script"), _read(message, "message"),
        envelope_from=envelope_from, envelope_to=envelope_to, mailboxes=mailboxes,
        environment=environment,
        scripts=ScriptDirs(personal_dir, settings.sieve_scripts_dir / "global"),
        before=[(name, _read(name, "script")) for name in before],
        after=[(name, _read(name, "script")) for name in after],
        limits=sieve_limits(settings))
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        click.echo(describe(report, result))
    if report["status"] != "ok":
        if not as_json:
            raise CLIError(report["errors"][0])
        sys.exit(1)
