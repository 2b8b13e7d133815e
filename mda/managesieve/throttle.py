"""Failed-login bookkeeping per peer address, for ManageSieve's brute-force defence.

Sans-IO: the clock is handed in. A peer that has failed `max_failures` logins within the
last `window` seconds is `blocked`: its next AUTHENTICATE is answered `NO (TRYLATER)`
without looking at the password (RFC 5804 §1.3 TRYLATER), until its oldest failure ages
out of the window. At most `max_peers` addresses are remembered; the one seen longest ago
is forgotten first, so a flood of addresses cannot exhaust memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginThrottle:
    """Counts failed logins per peer address within a sliding window.

    Args:
        max_failures: failures within the window after which the peer is blocked (>= 1).
        window: seconds a failure is remembered.
        clock: monotonic seconds; `time.monotonic` by default.
        max_peers: addresses remembered at most.
    """

    def __init__(self, max_failures: int, window: float, *,
                 clock: Callable[[], float] = time.monotonic, max_peers: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._max_peers = max_peers
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, peer: str) -> deque[float] | None:
        times = self._failures.get(peer)
        if times is None:
            return None
        horizon = self._clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[peer]
            return None
        return times

    def failures(self, peer: str) -> int:
        """Failed logins of `peer` within the window."""
        times = self._recent(peer)
        return len(times) if times is not None else 0

    def blocked(self, peer: str) -> bool:
        """Whether `peer` has used up its failed logins for now."""
        return self.failures(peer) >= self.max_failures

    def failed(self, peer: str) -> None:
        """Record a failed login of `peer` now."""
        times = self._recent(peer)
        if times is None:
            times = self._failures[peer] = deque(maxlen=self.max_failures)
        times.append(self._clock())
        self._failures.move_to_end(peer)
        while len(self._failures) > self._max_peers:
            self._failures.popitem(last=False)


__all__ = ["LoginThrottle"]
