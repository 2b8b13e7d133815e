"""Failed-login bookkeeping per throttle key, for ManageSieve's brute-force defence.

Sans-IO: the clock is handed in, and the caller chooses the key (`mda.managesieve.session`
says which).

An attempt is counted from the moment it starts: `begin` reserves a place for it as a
possible failure, and `succeeded`, `failed` or `cancelled` settles it once the password has
been checked. A key whose failures within the last `window` seconds plus its attempts still
in flight reach `max_failures` is refused by `begin`: its next AUTHENTICATE is answered
`NO (TRYLATER)` without looking at the password (RFC 5804 §1.3 TRYLATER), until its oldest
failure ages out of the window. So however many connections try at once, at most
`max_failures` passwords are checked per key and window.

At most `max_peers` keys with failures are remembered; the one seen longest ago is
forgotten first, so a flood of addresses cannot exhaust memory. Attempts in flight are
bounded by the number of open connections.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable


class LoginThrottle:
    """Counts failed and in-flight logins per key within a sliding window.

    Args:
        max_failures: failures (in flight included) within the window after which the key
            is refused (>= 1).
        window: seconds a failure is remembered.
        clock: monotonic seconds; `time.monotonic` by default.
        max_peers: keys with failures remembered at most.
    """

    def __init__(self, max_failures: int, window: float, *,
                 clock: Callable[[], float] = time.monotonic, max_peers: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._max_peers = max_peers
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()
        self._in_flight: dict[Hashable, int] = {}

    def _recent(self, key: Hashable) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = self._clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def failures(self, key: Hashable) -> int:
        """Failed logins of `key` within the window (attempts in flight not counted)."""
        times = self._recent(key)
        return len(times) if times is not None else 0

    def in_flight(self, key: Hashable) -> int:
        """Attempts of `key` begun and not settled yet."""
        return self._in_flight.get(key, 0)

    def blocked(self, key: Hashable) -> bool:
        """Whether `key` has used up its attempts for now (failures plus in flight)."""
        return self.failures(key) + self.in_flight(key) >= self.max_failures

    def begin(self, key: Hashable) -> bool:
        """Start an attempt of `key`, counted as a failure until it is settled.

        Returns:
            True when the attempt may check a password; it must then be settled with
            `succeeded`, `failed` or `cancelled`. False when `key` is blocked (nothing is
            recorded).
        """
        if self.blocked(key):
            return False
        self._in_flight[key] = self.in_flight(key) + 1
        return True

    def _settle(self, key: Hashable) -> None:
        count = self._in_flight.get(key, 0)
        if count > 1:
            self._in_flight[key] = count - 1
        else:
            self._in_flight.pop(key, None)

    def succeeded(self, key: Hashable) -> None:
        """The attempt begun for `key` logged in: it no longer counts."""
        self._settle(key)

    def cancelled(self, key: Hashable) -> None:
        """The attempt begun for `key` ended before a password was judged (database
        down): it no longer counts."""
        self._settle(key)

    def failed(self, key: Hashable) -> None:
        """Record a failed login of `key` now, settling its attempt in flight if any."""
        self._settle(key)
        times = self._recent(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.max_failures)
        times.append(self._clock())
        self._failures.move_to_end(key)
        while len(self._failures) > self._max_peers:
            self._failures.popitem(last=False)


__all__ = ["LoginThrottle"]
