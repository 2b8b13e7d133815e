"""The one place that turns `Settings` into what the Sieve engine is handed.

Delivery (`mda.delivery`), the dry run (`mda sieve test`), `mda sieve check` and `mda sieve
put` all build the engine's `Limits` and `Environment` here, so a dry run and a real
delivery of the same message agree. This module imports no database code: `mda sieve test`
stays quick to start.

    limits = sieve_limits(settings)
    environment = sieve_environment(settings, now=received_at, remote_ip="192.0.2.7")
"""

from __future__ import annotations

import os
from datetime import datetime

from mda.config import Settings
from mda.sieve.extensions.virustest import parse_text_values
from mda.sieve.interpreter import Environment
from mda.sieve.limits import Limits


def sieve_limits(settings: Settings) -> Limits:
    """The engine's resource limits from the `sieve_max_*` settings.

    Args:
        settings: mda's settings (`sieve_max_script_size` in bytes, `sieve_regex_timeout`
            in seconds, the others counts).

    Returns:
        The frozen `Limits`; fields the settings do not name keep the engine's defaults.
    """
    return Limits(
        script_size=settings.sieve_max_script_size,
        max_actions=settings.sieve_max_actions,
        max_redirects=settings.sieve_max_redirects,
        max_nesting=settings.sieve_max_nesting,
        max_steps=settings.sieve_max_steps,
        max_variable_size=settings.sieve_max_variable_size,
        regex_timeout=settings.sieve_regex_timeout,
        include_depth=settings.sieve_max_include_depth,
        max_includes=settings.sieve_max_includes,
    )


def header_names(text: str) -> tuple[str, ...]:
    """Split a comma-separated list of header field names, dropping blanks.

    Args:
        text: e.g. `"X-Spam-Flag, X-Original-To"`.

    Returns:
        The names, stripped, in the order given.
    """
    return tuple(name.strip() for name in text.split(",") if name.strip())


def local_timezone() -> str:
    """The time zone the date extension (RFC 5260 §4.3 "zone") treats as local: `TZ`, else UTC."""
    return os.environ.get("TZ") or "UTC"


def sieve_environment(settings: Settings, *, now: datetime | None,
                      remote_host: str = "", remote_ip: str = "",
                      user_addresses: tuple[str, ...] = (),
                      script_name: str = "") -> Environment:
    """The run facts for one evaluation.

    Args:
        settings: mda's settings: hostname (RFC 5183 "domain" and "host"), recipient
            delimiter (RFC 5233), spamtest/virustest (RFC 5235), duplicate periods
            (RFC 7352 §3.3, seconds), vacation periods (RFC 5230 §4.1, RFC 6131 §2,
            seconds) and editheader limits (RFC 5293 §6).
        now: the delivery time (aware), for currentdate, vacation and duplicate expiry;
            None = unknown.
        remote_host, remote_ip: the LMTP client (RFC 5183 "remote-host", "remote-ip").
        user_addresses: the user's own addresses besides the envelope recipient.
        script_name: the name of the user's active script ("" for none or a global one).

    Returns:
        The Environment.

    Raises:
        ValueError: `virustest_text_values` is malformed (Settings validation normally
            refuses such a value first).
    """
    return Environment(
        now=now,
        timezone=local_timezone(),
        domain=settings.hostname,
        host=settings.hostname,
        remote_host=remote_host,
        remote_ip=remote_ip,
        recipient_delimiter=settings.recipient_delimiter,
        vacation_min_seconds=settings.sieve_vacation_min_period,
        vacation_default_seconds=settings.sieve_vacation_default_period,
        vacation_max_seconds=settings.sieve_vacation_max_period,
        user_addresses=user_addresses,
        spamtest_header=settings.spamtest_header,
        spamtest_max=settings.spamtest_max,
        virustest_header=settings.virustest_header,
        virustest_text_values=parse_text_values(settings.virustest_text_values),
        duplicate_default_seconds=settings.sieve_duplicate_default_period,
        duplicate_max_seconds=settings.sieve_duplicate_max_period,
        editheader_forbid_add=header_names(settings.sieve_editheader_forbid_add),
        editheader_forbid_delete=header_names(settings.sieve_editheader_forbid_delete),
        editheader_max_header_size=settings.sieve_editheader_max_header_size,
        script_name=script_name,
    )


__all__ = ["header_names", "local_timezone", "sieve_environment", "sieve_limits"]
