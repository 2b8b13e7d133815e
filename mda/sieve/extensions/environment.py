"""environment — RFC 5183 (§4 the environment test, §5 the standard items).

Items: domain, host, location, name, phase, remote-host, remote-ip, version, taken from
the `Environment` the caller hands in (nothing is looked up). An unknown item makes the
test false (§4). Complete.
"""

from __future__ import annotations

from typing import Any

from mda.sieve.common import match, validate_match
from mda.sieve.spec import Call, CommandSpec, Extension

ITEMS = {
    "domain": "domain", "host": "host", "location": "location", "name": "name",
    "phase": "phase", "remote-host": "remote_host", "remote-ip": "remote_ip",
    "version": "version",
}


def _run(ctx: Any, call: Call) -> bool:
    attribute = ITEMS.get(ctx.string(call.args[0]).lower())
    if attribute is None:
        return False
    value = getattr(ctx.environment, attribute)
    return match(ctx, call, [value], ctx.strings(call.args[1]))


EXTENSION = Extension(
    name="environment",
    commands=(CommandSpec("environment", "test", ("string", "stringlist"),
                          groups=("comparator", "match-type"), extension="environment",
                          validate=validate_match, run=_run),),
)
