"""Database settings the server or driver would refuse at every connection are refused when
the settings load, as one error line naming the setting, by every command and `mda serve`."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Run, assert_one_line_error

IMPOSSIBLE_TIMEOUTS = [
    # PostgreSQL: "invalid value for parameter statement_timeout" (over 2^31-1 ms)
    ("MDA_DATABASE_STATEMENT_TIMEOUT", "1e12", "less than or equal to 2147483"),
    ("MDA_DATABASE_LOCK_TIMEOUT", "2147484", "less than or equal to 2147483"),
    # "cannot convert float infinity to integer", blamed on the URL
    ("MDA_DATABASE_LOCK_TIMEOUT", "inf", "finite"),
    ("MDA_DATABASE_STATEMENT_TIMEOUT", "nan", "finite"),
    ("MDA_DATABASE_BUSY_TIMEOUT", "inf", "finite"),
    ("MDA_DATABASE_POOL_TIMEOUT", "inf", "finite"),
    # rounds to 0 ms, which PostgreSQL and SQLite take as "no timeout"
    ("MDA_DATABASE_STATEMENT_TIMEOUT", "0.0004", "under the 1 ms"),
    ("MDA_DATABASE_BUSY_TIMEOUT", "1e-9", "under the 1 ms"),
    # no connection opens in a nanosecond: TimeoutError at every delivery
    ("MDA_DATABASE_CONNECT_TIMEOUT", "1e-9", "greater than or equal to 0.1"),
]


@pytest.mark.parametrize(("name", "value", "reason"), IMPOSSIBLE_TIMEOUTS,
                         ids=[f"{n}={v}" for n, v, _ in IMPOSSIBLE_TIMEOUTS])
def test_impossible_timeouts_are_refused(cli: Run, mda_env: dict[str, str], name: str,
                                         value: str, reason: str) -> None:
    env = dict(mda_env, **{name: value})
    for argv in (("user", "list"), ("serve", "--listen", "127.0.0.1:0")):
        assert_one_line_error(cli(*argv, env=env), f"invalid setting {name}", reason)


def test_the_longest_timeouts_are_accepted(cli: Run, mda_env: dict[str, str]) -> None:
    env = dict(mda_env, MDA_DATABASE_STATEMENT_TIMEOUT="2147483",
               MDA_DATABASE_LOCK_TIMEOUT="0.001", MDA_DATABASE_BUSY_TIMEOUT="2147483",
               MDA_DATABASE_CONNECT_TIMEOUT="0.1")
    proc = cli("user", "list", env=env)
    assert proc.returncode == 0, proc.stderr
