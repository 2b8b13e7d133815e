"""`mda serve`: run the LMTP delivery service in the foreground.

Settings come from `MDA_*` environment variables and the optional TOML file (see
`mda.config`); `--listen` overrides `MDA_LMTP_LISTEN`, `--workers` overrides `MDA_WORKERS`.
The schema is migrated before the listeners open. Logs go to stderr, one line per recipient
outcome:

    2024-05-01 12:00:00,123 INFO mda.lmtp: 4k2c9x0b7hfm: rcpt=<bob@example.org>
        result=stored mailboxes=INBOX ms=3.1 reply="250 2.0.0"

With `--workers N` (N > 1) a pre-fork parent (`mda.prefork`) migrates once, binds the
listeners and runs N worker processes on them; every log line then names its process after
the logger (`mda.lmtp[4711]: ...`).

SIGTERM or SIGINT stops the service gracefully (exit status 0).
"""

from __future__ import annotations

import asyncio

import click

from mda.cli import CLIError, load_settings, main
from mda.config import Settings


def _settings(listen: str | None, workers: int | None) -> Settings:
    """The settings (a bad value or MDA_CONFIG file is a one-line `mda: error:`), with
    `--listen` and `--workers` applied."""
    settings = load_settings()
    if listen is not None:
        settings = settings.model_copy(update={"lmtp_listen": listen})
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    return settings


@main.command()
@click.option("--listen", metavar="ADDRESS", default=None,
              help="host:port, [v6address]:port or unix:/path (overrides MDA_LMTP_LISTEN)")
@click.option("--workers", metavar="N", default=None, type=click.IntRange(1, 256),
              help="worker processes sharing the listeners (overrides MDA_WORKERS; "
                   "default 1: a single process)")
def serve(listen: str | None, workers: int | None) -> None:
    """Listen for LMTP and deliver through each user's Sieve script until SIGTERM."""
    from mda import server
    from mda.store.errors import StoreError

    settings = _settings(listen, workers)
    server.configure_logging(settings)
    try:
        server.ListenAddress.parse(settings.lmtp_listen)
        server.prepare_database(settings)
        if settings.workers == 1:
            asyncio.run(server.serve(settings))
            return
        from mda import prefork

        tls_context = server.server_tls_context(settings)
        listeners = server.bind_listeners(settings)
        status = prefork.run(settings, listeners, tls_context, settings.workers)
    except server.ListenError as exc:
        raise CLIError(str(exc)) from exc
    except StoreError as exc:
        raise CLIError(f"database: {exc}") from exc
    if status:
        raise click.exceptions.Exit(status)
