"""Whether the database answers: the check behind `/healthz` (`mda.http`).

The check runs `SELECT 1` in a read transaction (`Store.read`, so on SQLite it never waits
for the write lock) and gives it a deadline: a database that accepts the connection but does
not answer in time is as unusable for delivery as one that refuses it.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from mda.store.engine import Store, error_reason
from mda.store.errors import StoreUnavailable


async def check_database(store: Store, timeout: float) -> None:
    """Run a trivial query and return when the database answered it.

    Args:
        store: the database to ask.
        timeout: seconds the connection and the query may take together.

    Raises:
        StoreUnavailable: no answer within `timeout`, or any failure to connect or query
            (the SQLite file is missing, the server refuses the connection, the database does
            not exist); the message is one line giving the reason.
    """
    try:
        async with asyncio.timeout(timeout):
            async with store.read() as session:
                await session.execute(text("SELECT 1"))
    except TimeoutError:
        raise StoreUnavailable(f"database did not answer within {timeout:g} s") from None
    except StoreUnavailable as exc:
        raise StoreUnavailable(_one_line(str(exc))) from exc
    except Exception as exc:
        raise StoreUnavailable(f"database unavailable: {_one_line(error_reason(exc))}") \
            from exc


def _one_line(message: str) -> str:
    """The message with its line breaks folded into spaces."""
    return " ".join(message.split())
