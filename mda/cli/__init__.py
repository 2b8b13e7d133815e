"""The `mda` command: operators' entry point (serve, db, user, quota, sieve, mailbox, message).

Every command exits 0 on success and non-zero with a one-line reason on stderr on bad
input (`mda: error: ...`). The groups are defined here; the commands live in the modules
imported at the bottom, one module per area.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

T = TypeVar("T")


class CLIError(click.ClickException):
    """A one-line failure reason; printed as `mda: error: <reason>`, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"mda: error: {self.format_message()}", err=True)


def run_async(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Decorator: run an async click command body in a fresh event loop."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mda")
def main() -> None:
    """mda: Sieve-filtering mail delivery agent."""


@main.group()
def db() -> None:
    """Database schema management."""


@main.group()
def user() -> None:
    """Add, list, delete users and set their quotas."""


@main.group()
def quota() -> None:
    """Show quota usage."""


@main.group()
def sieve() -> None:
    """Manage users' Sieve scripts, check and dry-run scripts."""


@main.group()
def mailbox() -> None:
    """List a user's mailboxes."""


@main.group()
def message() -> None:
    """List, show and delete stored messages."""


# Command modules register themselves on the groups above.
from mda.cli import admin, scripts, dryrun, serve  # noqa: E402,F401

