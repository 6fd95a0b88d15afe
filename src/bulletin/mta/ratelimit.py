"""Rate limits that hold over any window: in one process, or shared by PostgreSQL workers.

Each limit is "at most N messages in any P seconds".

:class:`RateLimiter` serves one process (SQLite runs one sender). It keeps the times of the last
N grants of each limit (a sliding log in a ring buffer) and grants the next message no earlier
than P seconds after the N-th previous one, so no window of P seconds, wherever it starts,
ever holds more than N. Grants are reserved in order under a lock and then waited for outside
it, so several connections share one schedule. A limit above ``MAX_LOG`` messages (far more
than any provider's quota) is enforced by even spacing instead, which needs no memory. The
sender takes its grants as permits (``permit``/``settle``), which also count, as below, until
the message was answered, so that a slow answer cannot crowd a window with the next grants.

:class:`SharedRateLimiter` serves a cluster of PostgreSQL workers, on one machine or many. The
workers share a log of permits in the ``send_rate_permits`` table, on the database's clock.
A worker takes permits in small chunks (a tenth of the smallest quota) in short transactions
serialised by an advisory lock, never while talking SMTP. A permit counts against every limit
from the moment it is taken until P seconds after its message was *answered* by the server;
until the worker reports that moment the permit counts as in use. A chunk is granted only if,
with it, no limit would have more than N permits in use or answered within the last P seconds.
Since a message is received after its permit was taken and before its answer came back, any
window of P seconds then holds at most N received messages, whatever the network's delays,
the number of workers, or the order in which they report. Permits of a worker that died are
counted until a short grace after it is found dead.

Both read time through the clock seam of :mod:`bulletin.mta.clock` (``clock`` and ``sleep``), so
tests drive them with a fake clock.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.db import is_sqlite, transaction
from bulletin.models import SendRatePermit
from bulletin.mta.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

MAX_LOG = 1_000_000
# Added to every period when permits are counted until their answer: covers rounding and the tiny
# difference in pace between our clock (or the database's) and the clock of whoever counts the messages.
MARGIN = 0.005


def limits_from_settings(settings: Settings) -> list[tuple[int, float]]:
    """``smtp.messages_per_second`` and ``smtp.messages_per_hour`` as (count, period) limits."""
    per_second = settings.smtp.messages_per_second
    # At most floor(N) in any second; below one a second, one per 1/N seconds.
    second = (math.floor(per_second), 1.0) if per_second >= 1 else (1, 1.0 / per_second)
    return [second, (settings.smtp.messages_per_hour, 3600.0)]


def _check(limits: list[tuple[int, float]]) -> None:
    for count, period in limits:
        if count < 1 or period <= 0:
            raise ValueError(f"bad rate limit: {count} per {period}s")


@dataclass(eq=False)
class Permit:
    """The right to hand one message to the server; give it back with ``Limiter.settle``."""

    moment: float
    chunk: _Chunk | None = None


class Limiter(Protocol):
    """What the sender's connections need from a rate limiter."""

    def permit(self, stop: threading.Event | None = None) -> Permit | None:
        """Wait for a permit; None if ``stop`` was set meanwhile."""

    def permit_now(self) -> Permit | None:
        """A permit only if one is free right now."""

    def settle(self, permit: Permit, *, used: bool) -> None:
        """The permit's message was answered (``used``), or it was never handed over."""

    def flush(self) -> None:
        """Report what is settled and give back permits held but not handed out."""

    def close(self) -> None:
        """Flush for good: this limiter will not be used again."""


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
        _check(limits)
        self._limits = [_Limit(count, period) for count, period in limits]
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last = -math.inf
        # Permits (see ``permit``) handed out and not settled, and the answer times of the settled
        # ones within the longest period, in order. Limits above MAX_LOG are left to even spacing.
        self._in_use = 0
        self._answers: list[float] = []
        self._answered_limits = [(count, period) for count, period in limits if count <= MAX_LOG]
        self._settled = threading.Condition(self._lock)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = SYSTEM_CLOCK) -> RateLimiter:
        """``smtp.messages_per_second`` and ``smtp.messages_per_hour`` as limits, on ``clock``."""
        return cls(limits_from_settings(settings), clock=clock.monotonic, sleep=clock.sleep)

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

    # The Limiter protocol. A permit is a grant as above that also counts, like the shared limiter's,
    # until its message was answered: a late answer cannot crowd a window with the next grants.

    def _wait_for_answers(self, now: float) -> float | None:
        """Seconds until one more permit fits among those in use or answered lately; None: wait for a settle."""
        wait = 0.0
        answers = self._answers
        for count, period in self._answered_limits:
            recent = len(answers) - bisect.bisect_left(answers, now - period - MARGIN)
            if self._in_use + recent < count:
                continue
            if self._in_use >= count:
                return None
            # The answer that must leave the period first.
            blocking = answers[len(answers) - (count - self._in_use)]
            wait = max(wait, blocking + period + MARGIN - now + 1e-6)
        return wait

    def permit(self, stop: threading.Event | None = None) -> Permit | None:
        while True:
            with self._lock:
                if stop is not None and stop.is_set():
                    return None
                wait = self._wait_for_answers(self._clock())
                if wait is None:
                    self._settled.wait(0.1)
                    continue
                if wait == 0:
                    self._in_use += 1
                    break
            self._sleep(min(wait, 0.5))
        moment = self.acquire(stop)
        if moment is None:
            with self._lock:
                self._in_use -= 1
                self._settled.notify_all()
            return None
        return Permit(moment)

    def permit_now(self) -> Permit | None:
        with self._lock:
            if self._wait_for_answers(self._clock()) != 0:
                return None
            self._in_use += 1
        if self.try_acquire():
            return Permit(self._clock())
        with self._lock:
            self._in_use -= 1
            self._settled.notify_all()
        return None

    def settle(self, permit: Permit, *, used: bool) -> None:
        with self._lock:
            self._in_use -= 1
            if used and self._answered_limits:
                now = self._clock()
                self._answers.append(max(now, self._answers[-1]) if self._answers else now)
                # Forget answers no limit counts any more, in one go once they are half the list.
                longest = max(period for _, period in self._answered_limits)
                stale = bisect.bisect_left(self._answers, now - longest - MARGIN)
                if stale > len(self._answers) // 2:
                    del self._answers[:stale]
            self._settled.notify_all()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# The limit shared by PostgreSQL workers

# The key of pg_advisory_xact_lock ("bulletn1" in ASCII) that serialises every worker's reservations.
ADVISORY_KEY = 0x62756C6C65746E31
# How long the permits of a worker found dead still count: a message it had handed over in
# full may be taken in by the server just after the worker died.
DEAD_GRACE = 5.0
# How often a sending worker reports the messages answered meanwhile.
REPORT_EVERY = 0.1
# How long to wait before asking again when every permit is in use and none has been reported.
POLL = 0.02
# Answered permits older than the shortest period are merged per this many seconds, so the
# log of an hourly quota stays a few hundred rows.
BUCKET = 10.0

_NOW = text("SELECT extract(epoch FROM clock_timestamp())::float8")


class _Chunk:
    """Permits taken in one transaction: one open row of ``send_rate_permits``."""

    def __init__(self, row_id: int, count: int) -> None:
        self.row_id = row_id
        self.free = count  # not handed out yet
        self.out = 0  # handed out, not settled
        self.answered = 0  # settled as used, not reported yet
        self.last_answer = -math.inf  # on the local clock, the latest of those answers
        self.unused = 0  # settled unused or given back, not reported yet

    @property
    def finished(self) -> bool:
        return not (self.free or self.out or self.answered or self.unused)


@dataclass
class _Report:
    chunk: _Chunk
    answered: int
    last_answer: float
    unused: int


class SharedRateLimiter:
    """The limits of :func:`limits_from_settings`, held together by every worker of one database.

    ``holder`` names this worker in the log; ``holder_alive(session, holder)`` tells whether
    another holder still runs (its permits count for good until it is found dead).
    """

    def __init__(
        self,
        engine: Engine,
        limits: list[tuple[int, float]],
        holder: str,
        *,
        holder_alive: Callable[[Session, str], bool],
        chunk_size: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check(limits)
        self.engine = engine
        self.limits = list(limits)
        self.holder = holder
        # A tenth of the smallest quota: few transactions at a high rate, little held back at a low one.
        self.chunk_size = chunk_size or max(1, min(count for count, _ in limits) // 10)
        self._holder_alive = holder_alive
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._database_free = threading.Condition(self._lock)
        self._talking = False  # one thread of this worker talks to the database at a time
        self._chunks: list[_Chunk] = []
        self._last_report = -math.inf
        self._last_compaction = -math.inf
        self.transactions = 0

    @classmethod
    def from_settings(
        cls,
        engine: Engine,
        settings: Settings,
        holder: str,
        *,
        holder_alive: Callable[[Session, str], bool],
        clock: Clock = SYSTEM_CLOCK,
    ) -> SharedRateLimiter:
        return cls(
            engine,
            limits_from_settings(settings),
            holder,
            holder_alive=holder_alive,
            clock=clock.monotonic,
            sleep=clock.sleep,
        )

    # -- the Limiter protocol

    def permit(self, stop: threading.Event | None = None) -> Permit | None:
        while True:
            with self._lock:
                if stop is not None and stop.is_set():
                    return None
                permit = self._take()
                if permit is not None:
                    return permit
                if self._talking:
                    self._database_free.wait(0.05)
                    continue
                self._talking = True
            try:
                wait = self._exchange(want=self.chunk_size)
            finally:
                self._done_talking()
            # A long wait (an hourly quota used up) is cut into short sleeps so that a stopping sender does not hang.
            deadline = self._clock() + wait
            while wait > 0:
                if stop is not None and stop.is_set():
                    return None
                self._sleep(min(wait, 0.5))
                wait = deadline - self._clock()

    def permit_now(self) -> Permit | None:
        with self._lock:
            return self._take()

    def settle(self, permit: Permit, *, used: bool) -> None:
        chunk = permit.chunk
        assert chunk is not None, "a permit of another limiter"
        now = self._clock()
        with self._lock:
            chunk.out -= 1
            if used:
                chunk.answered += 1
                chunk.last_answer = max(chunk.last_answer, now)
            else:
                chunk.unused += 1
            if self._talking or now - self._last_report < REPORT_EVERY:
                return
            self._talking = True
        try:
            self._exchange(want=0)
        except Exception:  # the report stays pending and goes with the next transaction
            log.warning("reporting sent messages to the shared rate limit failed", exc_info=True)
        finally:
            self._done_talking()

    def flush(self) -> None:
        with self._lock:
            for chunk in self._chunks:
                chunk.unused += chunk.free
                chunk.free = 0
            while self._talking:
                self._database_free.wait()
            self._talking = True
        try:
            self._exchange(want=0)
        finally:
            self._done_talking()

    def close(self) -> None:
        self.flush()

    # -- inside

    def _take(self) -> Permit | None:
        for chunk in self._chunks:
            if chunk.free:
                chunk.free -= 1
                chunk.out += 1
                return Permit(self._clock(), chunk)
        return None

    def _done_talking(self) -> None:
        with self._lock:
            self._talking = False
            self._database_free.notify_all()

    def _exchange(self, *, want: int) -> float:
        """One transaction: report what was settled, and take ``want`` permits if any are free.

        Returns how long to wait before asking again (0 when permits were granted).
        """
        with self._lock:
            reports = [
                _Report(chunk, chunk.answered, chunk.last_answer, chunk.unused)
                for chunk in self._chunks
                if chunk.answered or chunk.unused
            ]
            for report in reports:
                report.chunk.answered = report.chunk.unused = 0
                report.chunk.last_answer = -math.inf
        lost: list[_Chunk] = []
        granted: tuple[int, int] | None = None
        wait = 0.0
        try:
            with transaction(self.engine) as session:
                session.execute(select(func.pg_advisory_xact_lock(ADVISORY_KEY)))
                before = self._clock()
                now = float(session.scalar(_NOW))
                # The database's clock minus ours, at most: answers are never reported as earlier than they were.
                offset = now - before
                for report in reports:
                    if report.answered:
                        session.add(
                            SendRatePermit(
                                holder=self.holder, count=report.answered, ends_at=report.last_answer + offset
                            )
                        )
                    still_open = session.execute(
                        update(SendRatePermit)
                        .where(SendRatePermit.id == report.chunk.row_id, SendRatePermit.ends_at.is_(None))
                        .values(count=SendRatePermit.count - report.answered - report.unused)
                    )
                    if still_open.rowcount == 0:  # type: ignore[attr-defined]
                        lost.append(report.chunk)
                session.execute(
                    delete(SendRatePermit).where(SendRatePermit.ends_at.is_(None), SendRatePermit.count <= 0)
                )
                self._tidy(session, now)
                if want:
                    granted, wait = self._grant(session, now, want)
        except BaseException:
            with self._lock:
                for report in reports:
                    report.chunk.answered += report.answered
                    report.chunk.unused += report.unused
                    report.chunk.last_answer = max(report.chunk.last_answer, report.last_answer)
            raise
        self.transactions += 1
        with self._lock:
            self._last_report = self._clock()
            for chunk in lost:
                # Taken for dead by another worker, which counted these permits as in use for a grace
                # period already: use no more of them.
                chunk.free = 0
            self._chunks = [chunk for chunk in self._chunks if not chunk.finished]
            if granted is not None:
                self._chunks.append(_Chunk(*granted))
        return wait

    def _usage(self, session: Session, now: float) -> tuple[int, list[int]]:
        """Permits in use, and per limit the permits in use or answered within its period."""
        in_use = func.coalesce(func.sum(SendRatePermit.count).filter(SendRatePermit.ends_at.is_(None)), 0)
        recent = [
            func.coalesce(func.sum(SendRatePermit.count).filter(SendRatePermit.ends_at >= now - period - MARGIN), 0)
            for _, period in self.limits
        ]
        row = session.execute(select(in_use, *recent)).one()
        return int(row[0]), [int(row[0]) + int(value) for value in row[1:]]

    def _grant(self, session: Session, now: float, want: int) -> tuple[tuple[int, int] | None, float]:
        in_use, counted = self._usage(session, now)
        free = min(count - used for (count, _), used in zip(self.limits, counted, strict=True))
        if free < 1 and self._count_dead_as_done(session, now):
            in_use, counted = self._usage(session, now)
            free = min(count - used for (count, _), used in zip(self.limits, counted, strict=True))
        if free >= 1:
            row = SendRatePermit(holder=self.holder, count=min(want, free), ends_at=None)
            session.add(row)
            session.flush()
            return (row.id, row.count), 0.0
        waits = [
            self._wait_for(session, now, count, period, in_use)
            for (count, period), used in zip(self.limits, counted, strict=True)
            if used >= count
        ]
        return None, max(waits)

    def _wait_for(self, session: Session, now: float, count: int, period: float, in_use: int) -> float:
        """Seconds until answered permits age out of the period enough for one more."""
        allowed = count - in_use - 1
        if allowed < 0:
            # Every permit is in use: the answers have not been reported yet.
            return POLL
        cumulative = (
            select(
                SendRatePermit.ends_at.label("ends_at"),
                func.sum(SendRatePermit.count)
                .over(order_by=SendRatePermit.ends_at.desc(), rows=(None, 0))
                .label("cumulative"),
            )
            .where(SendRatePermit.ends_at >= now - period - MARGIN)
            .subquery()
        )
        blocking = session.scalar(
            select(cumulative.c.ends_at)
            .where(cumulative.c.cumulative > allowed)
            .order_by(cumulative.c.ends_at.desc())
            .limit(1)
        )
        if blocking is None:
            return POLL
        return max(float(blocking) + period + MARGIN - now, 0.0) + 0.001

    def _count_dead_as_done(self, session: Session, now: float) -> bool:
        """Close the permits of holders that died, a short grace from now; True if there were any."""
        holders = session.scalars(
            select(SendRatePermit.holder)
            .where(SendRatePermit.ends_at.is_(None), SendRatePermit.holder != self.holder)
            .distinct()
        ).all()
        dead = [holder for holder in holders if not self._holder_alive(session, holder)]
        if dead:
            log.warning("counting the send permits of dead workers as done: %s", ", ".join(dead))
            session.execute(
                update(SendRatePermit)
                .where(SendRatePermit.holder.in_(dead), SendRatePermit.ends_at.is_(None))
                .values(ends_at=now + DEAD_GRACE)
            )
        return bool(dead)

    def _tidy(self, session: Session, now: float) -> None:
        """Forget permits no limit counts any more, and merge old ones of a long limit now and then."""
        longest = max(period for _, period in self.limits)
        session.execute(delete(SendRatePermit).where(SendRatePermit.ends_at < now - longest - MARGIN))
        if longest < 60 * BUCKET or now - self._last_compaction < BUCKET:
            return
        self._last_compaction = now
        # Each merged row ends when its last permit did (counted a little longer, never shorter),
        # and only rows the shorter limits no longer count are merged.
        cutoff = now - min(period for _, period in self.limits) - MARGIN - 1.0
        session.execute(
            text(
                "WITH old AS (DELETE FROM send_rate_permits WHERE ends_at < :cutoff RETURNING count, ends_at) "
                "INSERT INTO send_rate_permits (holder, count, ends_at) "
                "SELECT '(merged)', SUM(count), MAX(ends_at) FROM old GROUP BY floor(ends_at / :bucket)"
            ),
            {"cutoff": cutoff, "bucket": BUCKET},
        )


def limiter_for(
    engine: Engine,
    settings: Settings,
    holder: str,
    *,
    holder_alive: Callable[[Session, str], bool],
    clock: Clock = SYSTEM_CLOCK,
) -> Limiter:
    """The limiter a sender uses: in-process on SQLite (one sender), shared on PostgreSQL."""
    if is_sqlite(engine):
        return RateLimiter.from_settings(settings, clock=clock)
    return SharedRateLimiter.from_settings(engine, settings, holder, holder_alive=holder_alive, clock=clock)
