"""subaddress — RFC 5233 (§4 the :user and :detail address parts).

The separator characters come from `Environment.recipient_delimiter` (setting
`MDA_RECIPIENT_DELIMITER`, default "+"); the local part is split at the first of them.
`:detail` of an address without a separator matches nothing; an empty detail ("user+")
is the empty string (§4). Complete.
"""

from __future__ import annotations

from typing import Any

from mda.sieve.addresses import Address
from mda.sieve.spec import Extension, TagSpec


def split_local(ctx: Any, local: str) -> tuple[str, str | None]:
    """(user, detail) of a local part; detail None when there is no separator."""
    delimiters = ctx.environment.recipient_delimiter
    positions = [local.find(d) for d in delimiters if d and local.find(d) >= 0]
    if not positions:
        return local, None
    cut = min(positions)
    return local[:cut], local[cut + 1:]


def _user(ctx: Any, addr: Address) -> str | None:
    return split_local(ctx, addr.local)[0]


def _detail(ctx: Any, addr: Address) -> str | None:
    return split_local(ctx, addr.local)[1]


EXTENSION = Extension(
    name="subaddress",
    tags=(
        TagSpec(":user", group="address-part", extension="subaddress", impl=_user),
        TagSpec(":detail", group="address-part", extension="subaddress", impl=_detail),
    ),
)
