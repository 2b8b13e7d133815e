"""The `mda` command: operators' entry point (serve, db, user, quota, sieve, mailbox, message).

Every command exits 0 on success and non-zero with a one-line reason on stderr on bad
input (`mda: error: ...`). The groups are defined here; the commands live in the modules
imported at the bottom, one module per area.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from mda.config import Settings

T = TypeVar("T")


class CLIError(click.ClickException):
    """A one-line failure reason; printed as `mda: error: <reason>`, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"mda: error: {self.format_message()}", err=True)


def load_settings() -> Settings:
    """mda's settings, with any problem in them reported as one CLI error line.

    Raises:
        CLIError: a setting (environment variable or MDA_CONFIG TOML file) is invalid, or
            the TOML file is unreadable, malformed or has an unknown key.
    """
    from mda.config import SettingsError, get_settings  # pydantic is slow to import

    try:
        return get_settings()
    except SettingsError as exc:
        raise CLIError(str(exc)) from None


def run_async(fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Decorator: run an async click command body in a fresh event loop."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


class _OneLineErrors(click.Group):
    """A group whose usage errors (missing argument, bad option value ...) are one line
    `mda: error: <reason>` (exit status 2) like every other failure, not click's usage block.
    `mda` or `mda user` alone still print the help."""

    group_class = type  # subgroups are of this class too

    #: Modules (under `mda.cli`) whose import registers this group's commands, in lookup
    #: order. They are imported only when one of their commands is needed, so that
    #: `mda sieve test` does not pay for loading SQLAlchemy and the LMTP stack.
    command_modules: tuple[str, ...] = ()

    def _load_modules(self, until: str | None = None) -> None:
        for module in self.command_modules:
            if until is not None and until in self.commands:
                return
            importlib.import_module(f"mda.cli.{module}")

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load_modules(until=cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_modules()
        return super().list_commands(ctx)

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _usage_error(exc) from exc

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_error(exc) from exc


def _usage_error(exc: click.UsageError) -> click.ClickException:
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc
    where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    error = CLIError(f"{exc.format_message()}{where}")
    error.exit_code = 2
    return error


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
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


# Command modules register themselves on the groups above when first needed.
main.command_modules = ("serve",)
sieve.command_modules = ("dryrun", "scripts")
for _group in (db, user, quota, mailbox, message):
    _group.command_modules = ("admin",)

