"""On PostgreSQL the workers share one rate limit: a quota holds over any window, whatever their number."""

from __future__ import annotations

import bisect
import random
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bulletin.db import make_engine, reading, transaction
from bulletin.migrate import upgrade
from bulletin.models import Delivery, DeliveryState, SendRatePermit
from bulletin.mta import ratelimit
from bulletin.mta.ratelimit import RateLimiter, SharedRateLimiter

from .factories import write_config
from .send_fixtures import (
    add_subscribers,
    assert_each_received_once,
    fast_settings,
    freeze,
    make_edition,
    make_settings,
    run_workers,
)
from .smtp_server import RecordingSMTPServer


def most_in_any_window(times: list[float], period: float) -> int:
    """The largest number of events in a closed window [t, t + period], over every start t."""
    times = sorted(times)
    # The busiest window starts at an event.
    return max(bisect.bisect_right(times, start + period) - index for index, start in enumerate(times))


def always_alive(session: Session, holder: str) -> bool:
    return True


@pytest.fixture
def pg_engine(postgres_url: str) -> Engine:
    engine = make_engine(postgres_url)
    upgrade(engine)
    return engine


@pytest.mark.postgres
@pytest.mark.slow
def test_three_worker_processes_keep_the_quota_over_every_second(
    tmp_path: Path, smtp_server: RecordingSMTPServer, postgres_url: str
) -> None:
    recipients = 120
    data = fast_settings(
        tmp_path,
        smtp_server,
        database_url=postgres_url,
        smtp={"messages_per_second": 20.0, "connections": 3},
        delivery={"batch_size": 10},
    )
    config = write_config(tmp_path / "bulletin.toml", data)
    settings = make_settings(tmp_path, smtp_server, database_url=postgres_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    emails = add_subscribers(engine, recipients)
    edition_id = make_edition(engine, settings)
    freeze(engine, settings, edition_id)
    # Some answers come late: a limiter counting only when messages leave would let a late one
    # and the next second's burst land in the same second.
    smtp_server.faults.stall_seconds = 0.4
    smtp_server.faults.stall_count = 12

    # Each worker alone may send 20 a second: three of them could send 60.
    outputs = run_workers(config, 3)
    assert_each_received_once(smtp_server, emails)
    times = [message.received_at for message in smtp_server.messages]
    assert most_in_any_window(times, 1.0) <= 20
    per_worker = [int(re.search(r"^worker \S+: (\d+) sent", out, re.M).group(1)) for out, _ in outputs]  # type: ignore[union-attr]
    assert sum(per_worker) == recipients
    assert sum(1 for count in per_worker if count > 0) >= 2, per_worker
    with reading(engine) as session:
        states = Counter(session.scalars(select(Delivery.state).where(Delivery.edition_id == edition_id)))
        # Every worker gave back what it held: nothing stays counted as in use.
        in_use = session.scalar(select(func.count()).where(SendRatePermit.ends_at.is_(None)))
    assert states == {DeliveryState.SENT: recipients}
    assert in_use == 0
    engine.dispose()


def send_with_late_answers(limiters: list[ratelimit.Limiter], per_limiter: int) -> tuple[list[float], float]:
    """Each limiter in its own thread sends messages the server takes in at any moment before it
    answers, up to 0.3 s later; the times the server took them in, and how long it all took."""
    received: list[float] = []
    lock = threading.Lock()
    rng = random.Random(5)

    def connection(limiter: ratelimit.Limiter) -> None:
        for _ in range(per_limiter):
            permit = limiter.permit()
            assert permit is not None
            # The server takes the message in somewhere between now and its answer, up to 0.3 s later.
            latency = rng.choice([0.0, 0.01, 0.3])
            arrival = rng.uniform(0, latency)
            time.sleep(arrival)
            with lock:
                received.append(time.monotonic())
            time.sleep(latency - arrival)
            limiter.settle(permit, used=True)
        limiter.close()

    threads = [threading.Thread(target=connection, args=(limiter,)) for limiter in limiters]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return received, time.monotonic() - started


def test_late_answers_never_crowd_a_window_in_one_process() -> None:
    """SQLite's single sender: its connections share the in-process limiter."""
    limiter = RateLimiter([(10, 0.5)])
    received, _ = send_with_late_answers([limiter] * 4, 10)
    assert len(received) == 40
    assert most_in_any_window(received, 0.5) <= 10


@pytest.mark.postgres
def test_late_answers_never_crowd_a_window(pg_engine: Engine) -> None:
    """Four limiters, as four workers, on the shared log."""
    limiters: list[ratelimit.Limiter] = [
        SharedRateLimiter(pg_engine, [(10, 0.5)], f"host:{n}:w", holder_alive=always_alive) for n in range(4)
    ]
    received, elapsed = send_with_late_answers(limiters, 15)
    assert len(received) == 60
    assert most_in_any_window(received, 0.5) <= 10
    # A limit, not a crawl: 60 at 10 per half second need 2.5 s; allow the answers' delays on top.
    assert elapsed < 10, elapsed
    with reading(pg_engine) as session:
        assert session.scalar(select(func.count()).where(SendRatePermit.ends_at.is_(None))) == 0


@pytest.mark.postgres
def test_unused_permits_go_back_and_count_for_nothing(pg_engine: Engine) -> None:
    first = SharedRateLimiter(pg_engine, [(4, 60.0)], "host:1:w", holder_alive=always_alive, chunk_size=4)
    second = SharedRateLimiter(pg_engine, [(4, 60.0)], "host:2:w", holder_alive=always_alive, chunk_size=4)
    taken = first.permit()
    assert taken is not None
    # The first worker holds the whole quota for the minute: the second gets nothing now.
    assert second.permit_now() is None
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert second.permit(stop) is None
    # One message went out; the three permits never handed over go back and can be used at once.
    first.settle(taken, used=True)
    first.close()
    granted = [second.permit() for _ in range(3)]
    assert all(permit is not None for permit in granted)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert second.permit(stop) is None


@pytest.mark.postgres
def test_a_dead_workers_permits_are_freed_after_a_grace(pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "DEAD_GRACE", 0.3)
    with transaction(pg_engine) as session:
        # Killed in the middle of its chunk: its permits stay open for ever unless someone closes them.
        session.add(SendRatePermit(holder="otherhost:4242:worker", count=5, ends_at=None))
    alive = SharedRateLimiter(pg_engine, [(5, 0.5)], "host:1:w", holder_alive=always_alive)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    assert alive.permit(stop) is None

    limiter = SharedRateLimiter(
        pg_engine, [(5, 0.5)], "host:1:w", holder_alive=lambda session, holder: holder == "host:1:w"
    )
    started = time.monotonic()
    permit = limiter.permit()
    waited = time.monotonic() - started
    assert permit is not None
    # Counted as answered a grace after it was found dead, so free one period after that.
    assert 0.3 + 0.5 <= waited < 5, waited
    limiter.settle(permit, used=True)
    limiter.close()


@pytest.mark.postgres
def test_a_high_rate_takes_permits_in_chunks(pg_engine: Engine) -> None:
    limiter = SharedRateLimiter(pg_engine, [(10_000, 1.0), (10_000_000, 3600.0)], "host:1:w", holder_alive=always_alive)
    assert limiter.chunk_size == 1000
    for _ in range(2500):
        permit = limiter.permit()
        assert permit is not None
        limiter.settle(permit, used=True)
    limiter.close()
    # Three chunks and a few reports of answered messages, not a transaction per message.
    assert limiter.transactions < 60, limiter.transactions
    with reading(pg_engine) as session:
        answered = session.scalar(select(func.sum(SendRatePermit.count)).where(SendRatePermit.ends_at.is_not(None)))
        in_use = session.scalar(select(func.count()).where(SendRatePermit.ends_at.is_(None)))
    assert answered == 2500
    assert in_use == 0
