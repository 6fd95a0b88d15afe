"""The rate limiter holds over any window, for bursts and for several connections at once."""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from pathlib import Path
from typing import Any

from bulletin.config import settings_from_dict
from bulletin.mta.ratelimit import RateLimiter
from bulletin.mta.sender import run_send
from bulletin.mta.smtp import SmtpTransport

from .send_fixtures import FakeClock as SenderClock
from .send_fixtures import freeze, sending_world
from .smtp_server import RecordingSMTPServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def most_in_any_window(times: list[float], period: float) -> int:
    """The largest number of grants in a half-open window [t, t + period), over every start t."""
    times = sorted(times)
    # The busiest window starts at a grant.
    return max(bisect.bisect_left(times, start + period) - index for index, start in enumerate(times))


def test_quota_holds_over_any_window_even_after_idle_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(14, 1.0), (100, 60.0)], clock=clock, sleep=clock.sleep)
    granted = []
    for n in range(300):
        granted.append(limiter.acquire())
        # Irregular gaps, and a long pause that a token bucket would turn into a double burst.
        clock.now += 0.5 if n == 150 else (0.013 if n % 7 else 0.2)
    assert most_in_any_window(granted, 1.0) == 14
    assert most_in_any_window(granted, 60.0) <= 100


def test_it_is_a_limit_not_a_pace() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(14, 1.0)], clock=clock, sleep=clock.sleep)
    granted = [limiter.reserve() for _ in range(29)]
    assert granted[:14] == [1000.0] * 14
    assert granted[14:28] == [1001.0] * 14
    assert granted[28] == 1002.0


def test_fractional_rate_spaces_messages() -> None:
    clock = FakeClock()
    limiter = RateLimiter.from_settings(
        settings_from_dict({"smtp": {"messages_per_second": 0.5, "messages_per_hour": 1000}}, Path("."))
    )
    limiter._clock, limiter._sleep = clock, clock.sleep  # type: ignore[method-assign]
    granted = [limiter.acquire() for _ in range(5)]
    assert [round(b - a, 6) for a, b in itertools.pairwise(granted)] == [2.0] * 4


def test_huge_limits_use_even_spacing_and_still_hold() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(5_000_000, 3600.0)], clock=clock, sleep=clock.sleep)
    granted = [limiter.acquire() for _ in range(1000)]
    spacing = 3600.0 / 5_000_000
    assert all(b - a >= spacing - 1e-12 for a, b in itertools.pairwise(granted))


def test_a_stopping_sender_does_not_wait_for_its_slot() -> None:
    limiter = RateLimiter([(1, 3600.0)])
    stop = threading.Event()
    assert limiter.acquire(stop) is not None
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert limiter.acquire(stop) is None
    assert time.monotonic() - started < 1.0


def test_connections_share_one_schedule() -> None:
    limiter = RateLimiter([(20, 0.5)])
    granted: list[float] = []
    lock = threading.Lock()

    def connection() -> None:
        for _ in range(15):
            moment = limiter.acquire()
            assert moment is not None
            with lock:
                granted.append(moment)
            # The real handing-over happens at the granted time.
            assert time.monotonic() >= moment

    threads = [threading.Thread(target=connection) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 60
    assert most_in_any_window(granted, 0.5) == 20
    # 60 grants at 20 per half second need at least a full second.
    assert max(granted) - min(granted) >= 1.0


def test_the_sender_keeps_the_rate_window_on_its_clock(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    # Five a second for 30 messages over two connections: six seconds on the fake clock, none in real time.
    settings, engine, edition_id, emails = sending_world(
        tmp_path, smtp_server, 30, smtp={"messages_per_second": 5.0, "connections": 2}
    )
    freeze(engine, settings, edition_id)
    clock = SenderClock()
    handed: list[float] = []

    class Probe(SmtpTransport):
        """The real SMTP connection, noting on the sender's clock when each message goes out."""

        def send_bytes(self, *args: Any, **kwargs: Any) -> str:
            handed.append(clock.monotonic())
            return super().send_bytes(*args, **kwargs)

    started = time.monotonic()
    report = run_send(engine, settings, edition_id, worker="w", clock=clock, transport_factory=Probe)

    assert report.sent == 30 and sorted(smtp_server.recipients()) == sorted(emails)
    assert most_in_any_window(handed, 1.0) <= 5
    assert max(handed) - min(handed) >= (30 - 5) / 5 - 0.01
    # The waits were the fake clock's: the test did not take six seconds.
    assert time.monotonic() - started < 6
