"""The clock seam of the sender: the ledger, the retry schedule and the rate limiter read time through it.

Tests pass a fake clock whose ``sleep`` moves time forward at once, so a retry that is due in
five minutes is due after one call, and nothing waits for real time to pass.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the sender asks of time."""

    def now(self) -> datetime:
        """The current moment, timezone-aware UTC (stored in the ledger)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (rate limits, elapsed times)."""

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Let up to ``seconds`` pass, or less if ``event`` is set; return whether it is set."""


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(seconds, 0.0))


SYSTEM_CLOCK: Clock = SystemClock()
