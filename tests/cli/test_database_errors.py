"""A database URL mda cannot use, or a server that refuses the connection, is one error
line naming the problem (and where a URL is wrong, MDA_DATABASE_URL and its forms), from the
commands and from `mda serve`, never a traceback."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Run, assert_one_line_error
from tests.conftest import PG_ADMIN_DSN

BAD_URLS = [
    ("garbage", "not a database URL"),
    ("", "not a database URL"),
    ("mysql+aiomysql://u@h/db", "not a database mda supports"),
    ("postgresql://postgres@127.0.0.1/test", "postgresql+asyncpg://"),
    ("postgres://postgres@127.0.0.1/test", "postgresql+asyncpg://"),
    ("postgresql+psycopg2://postgres@127.0.0.1/test", "postgresql+asyncpg://"),
    ("sqlite:///var/mda.sqlite3", "sqlite+aiosqlite:///"),
    ("postgresql+asyncpg://postgres@127.0.0.1/test?sslmod=disable", "'sslmod'"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS, ids=[u or "empty" for u, _ in BAD_URLS])
def test_unusable_url_is_named_with_the_forms_mda_takes(mda: Run, mda_env: dict[str, str],
                                                        url: str, reason: str) -> None:
    env = dict(mda_env, MDA_DATABASE_URL=url)
    for argv in (("user", "list"), ("db", "upgrade"), ("serve", "--listen", "127.0.0.1:0")):
        err = assert_one_line_error(mda(*argv, env=env), "MDA_DATABASE_URL", reason)
        assert "sqlite+aiosqlite:///" in err and "postgresql+asyncpg://" in err


def _pg(database: str, user: str | None = None, query: str = "") -> str:
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_DSN).set(drivername="postgresql+asyncpg", database=database)
    if user is not None:
        url = url.set(username=user)
    return url.render_as_string(hide_password=False) + query


def test_unknown_role_is_database_unavailable(mda: Run, mda_env: dict[str, str],
                                              pg_url: str) -> None:
    """SQLSTATE 28000 (invalid authorization) is the server refusing us, not a bug."""
    from sqlalchemy.engine import make_url

    env = dict(mda_env, MDA_DATABASE_URL=_pg(make_url(pg_url).database, "mda_no_such_role"))
    for argv in (("user", "list"), ("db", "upgrade"), ("serve", "--listen", "127.0.0.1:0")):
        assert_one_line_error(mda(*argv, env=env), "database unavailable",
                              'role "mda_no_such_role" does not exist')


def test_sslmode_is_taken_as_asyncpg_ssl(mda: Run, mda_env: dict[str, str],
                                         pg_url: str) -> None:
    """libpq's `sslmode=` (which asyncpg's connect() does not take) means its `ssl=`."""
    env = dict(mda_env, MDA_DATABASE_URL=f"{pg_url}?sslmode=disable")
    mda("db", "upgrade", env=env, check=True)
    assert mda("user", "list", env=env, check=True).stdout == b""


def test_unreachable_server_names_where(mda: Run, mda_env: dict[str, str]) -> None:
    env = dict(mda_env, MDA_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    assert_one_line_error(mda("user", "list", env=env), "database unavailable",
                          "127.0.0.1:1/nothing")
