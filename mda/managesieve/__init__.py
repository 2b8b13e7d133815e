"""ManageSieve (RFC 5804): users upload, check, activate and manage their Sieve scripts.

Modules:
- `wire`: the sans-IO command parser (`CommandParser`: bytes in, `Command`/`BadCommand`
  out, literals counted in octets, line and literal limits) and the response encoders.
- `sasl`: the server side of SASL PLAIN (RFC 4616) and LOGIN, sans-IO.
- `throttle`: failed logins per peer address (`LoginThrottle`).
- `session`: `Session`, the per-connection state machine and every command of RFC 5804
  §2, on the same compiler (`mda.sieve`) and store (`mda.store`) as the CLI.
- `server`: `ManageSieveServer`, the asyncio listener (connection limit, idle timeout,
  STARTTLS, implicit TLS, graceful shutdown).

This package never imports SQLAlchemy; it calls `mda.store` functions, scoped by the
logged-in user's id.
"""

from mda.managesieve.server import ManageSieveServer, TLSSetupError, load_tls_context
from mda.managesieve.session import Peer, Reply, ServerContext, Session, State

__all__ = ["ManageSieveServer", "Peer", "Reply", "ServerContext", "Session", "State",
           "TLSSetupError", "load_tls_context"]
