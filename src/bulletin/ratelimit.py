"""A rate limiter that holds over any window, shared by every connection of a sender.

Each limit is "at most N messages in any P seconds". The limiter keeps the times of the last
N grants of each limit (a sliding log in a ring buffer) and grants the next message no earlier
than P seconds after the N-th previous one, so no window of P seconds, wherever it starts,
ever holds more than N. Grants are reserved in order under a lock and then waited for outside
it, so several connections share one schedule.

A limit above ``MAX_LOG`` messages (far more than any provider's quota) is enforced by even
spacing instead, which holds over any window too and needs no memory.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable

from bulletin.config import Settings

MAX_LOG = 1_000_000


class _Limit:
    def __init__(self, count: int, period: float) -> None:
        self.count = count
        self.period = period
        self.spacing = period / count if count > MAX_LOG else 0.0
        self.log = array("d", [-math.inf]) * (count if not self.spacing else 1)
        self.next = 0

    def earliest(self) -> float:
        if self.spacing:
            return self.log[0] + self.spacing
        return self.log[self.next] + self.period

    def record(self, moment: float) -> None:
        if self.spacing:
            self.log[0] = moment
            return
        self.log[self.next] = moment
        self.next = (self.next + 1) % self.count


class RateLimiter:
    """Grants message slots so that every (count, period) limit holds over any window."""

    def __init__(
        self,
        limits: list[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for count, period in limits:
            if count < 1 or period <= 0:
                raise ValueError(f"bad rate limit: {count} per {period}s")
        self._limits = [_Limit(count, period) for count, period in limits]
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """``smtp.messages_per_second`` and ``smtp.messages_per_hour`` as limits."""
        per_second = settings.smtp.messages_per_second
        # At most floor(N) in any second; below one a second, one per 1/N seconds.
        second = (math.floor(per_second), 1.0) if per_second >= 1 else (1, 1.0 / per_second)
        return cls([second, (settings.smtp.messages_per_hour, 3600.0)])

    def reserve(self) -> float:
        """Reserve the next slot and return its time on the limiter's clock (may be in the future)."""
        with self._lock:
            moment = max([self._clock(), self._last, *(limit.earliest() for limit in self._limits)])
            for limit in self._limits:
                limit.record(moment)
            self._last = moment
            return moment

    def try_acquire(self) -> bool:
        """Take a slot only if one is free right now."""
        with self._lock:
            now = self._clock()
            if max([self._last, *(limit.earliest() for limit in self._limits)]) > now:
                return False
            for limit in self._limits:
                limit.record(now)
            self._last = now
            return True

    def acquire(self, stop: threading.Event | None = None) -> float | None:
        """Wait until a message may be handed to the server and return the granted time.

        Returns None if ``stop`` was set meanwhile.

        A long wait (an hourly quota used up) is cut into short sleeps so that a stopping
        sender does not hang.
        """
        moment = self.reserve()
        while True:
            if stop is not None and stop.is_set():
                return None
            delay = moment - self._clock()
            if delay <= 0:
                return moment
            self._sleep(min(delay, 0.5))
