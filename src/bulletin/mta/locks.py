"""Named locks in the ``locks`` table: the scheduler, the SQLite sender and the PostgreSQL workers.

Every lock row names its holder ``host:pid:label`` and carries a heartbeat the holder renews.
One rule decides whether a holder still lives (:func:`holder_alive`):

- its heartbeat is no older than ``stale_after`` seconds, and
- when it ran on this machine, its process still exists, is not a zombie and was started no
  later than the lock was taken (a process started afterwards reused the pid: psutil's
  create time tells them apart).

A lock whose holder is not alive is taken over at once; a live holder's lock is refused with
one line naming it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psutil
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bulletin.db import is_sqlite, reading, transaction
from bulletin.errors import Conflict
from bulletin.models import Lock, utcnow

log = logging.getLogger(__name__)

SCHEDULER_LOCK = "scheduler"
SENDER_LOCK = "sender"
WORKER_PREFIX = "worker:"
# Heartbeats every few seconds; a holder silent for this long is taken for dead wherever it runs.
HEARTBEAT_SECONDS = 5.0
STALE_AFTER = 30.0


class LockHeld(Conflict):
    """Another live process holds the lock."""


def holder_name(label: str, *, unique: bool = False) -> str:
    """``host:pid:label`` for this process; ``unique`` adds a random tag (two holders in one process)."""
    tag = f"{label}.{secrets.token_hex(3)}" if unique else label
    return f"{socket.gethostname()}:{os.getpid()}:{tag}"


def _parts(holder: str) -> tuple[str, int | None]:
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return host, int(pid) if pid.isdigit() else None


def describe_holder(holder: str) -> str:
    """``pid 1234 on host`` for a holder made by :func:`holder_name`."""
    host, pid = _parts(holder)
    return f"pid {pid} on {host}" if pid is not None else holder


def process_gone(holder: str, acquired_at: datetime) -> bool:
    """True when the holder ran on this machine and that process is no longer there."""
    host, pid = _parts(holder)
    if host != socket.gethostname() or pid is None or pid == os.getpid():
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        # A process started after the lock was taken is a new one that reused the pid.
        started: float = process.create_time()
        return started > acquired_at.timestamp() + 1.0
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def holder_alive(lock: Lock, now: datetime, stale_after: float = STALE_AFTER) -> bool:
    """The one liveness rule of every lock (see the module docstring)."""
    if (now - lock.heartbeat_at).total_seconds() > stale_after:
        return False
    return not process_gone(lock.holder, lock.acquired_at)


def acquire(
    engine: Engine,
    name: str,
    holder: str,
    *,
    refusal: str,
    hint: str = "",
    stale_after: float = STALE_AFTER,
    now: datetime | None = None,
) -> str | None:
    """Take the named lock; return the previous holder if it was taken over, else None.

    Raises LockHeld, ``refusal`` followed by who holds it (and ``hint``), when a live process has it.
    """
    moment = now or utcnow()
    try:
        with transaction(engine) as session:
            # FOR UPDATE serialises two takeovers on PostgreSQL; SQLite's write transaction already does.
            lock = session.scalars(select(Lock).where(Lock.name == name).with_for_update()).first()
            if lock is None:
                session.add(Lock(name=name, holder=holder, acquired_at=moment, heartbeat_at=moment))
                return None
            if lock.holder == holder:
                lock.heartbeat_at = moment
                return None
            if holder_alive(lock, moment, stale_after):
                silent = max((moment - lock.heartbeat_at).total_seconds(), 0)
                raise LockHeld(
                    f"{refusal}: {describe_holder(lock.holder)} ({lock.holder}), since "
                    f"{lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC (last heartbeat {silent:.0f} s ago){hint}"
                )
            previous = lock.holder
            lock.holder = holder
            lock.acquired_at = moment
            lock.heartbeat_at = moment
            return previous
    except IntegrityError:
        # Another process inserted the row at the same moment (PostgreSQL); it holds the lock.
        current = current_holder(engine, name)
        who = describe_holder(current.holder) if current else "another process"
        raise LockHeld(f"{refusal}: {who}") from None


def renew(engine: Engine, name: str, holder: str, *, now: datetime | None = None) -> bool:
    """Refresh the heartbeat; False when the lock now belongs to someone else."""
    with transaction(engine) as session:
        result = session.execute(
            update(Lock).where(Lock.name == name, Lock.holder == holder).values(heartbeat_at=now or utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lock up if this holder still has it."""
    with transaction(engine) as session:
        session.execute(delete(Lock).where(Lock.name == name, Lock.holder == holder))


def current_holder(engine: Engine, name: str = SCHEDULER_LOCK) -> Lock | None:
    with reading(engine) as session:
        return session.get(Lock, name)


class HeldLock:
    """A lock taken now and kept fresh by a heartbeat thread until :meth:`release`."""

    def __init__(self, engine: Engine, name: str, holder: str, *, refusal: str, hint: str = "") -> None:
        self.engine = engine
        self.name = name
        self.holder = holder
        self.refusal = refusal
        self.hint = hint
        self.previous: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        self.previous = acquire(self.engine, self.name, self.holder, refusal=self.refusal, hint=self.hint)
        if self.previous:
            log.warning("took over lock %s from %s (it is no longer alive)", self.name, self.previous)
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                renew(self.engine, self.name, self.holder)
            except Exception:  # a busy database must not kill the heartbeat; the next beat retries
                log.warning("heartbeat of %s failed", self.name, exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        release(self.engine, self.name, self.holder)


# Locks taken by this process, so that a command holding the sender lock can call the sender.
_held: dict[tuple[str, str], int] = {}
_held_guard = threading.Lock()


def sender_lock_name(engine: Engine, worker: str) -> str:
    """The single ``sender`` lock on SQLite; one ``worker:NAME`` heartbeat per worker on PostgreSQL."""
    return SENDER_LOCK if is_sqlite(engine) else f"{WORKER_PREFIX}{worker}"[:80]


@contextmanager
def sending_as(engine: Engine, worker: str) -> Iterator[None]:
    """Hold the right to send: the single sender lock on SQLite, a worker heartbeat on PostgreSQL.

    Raises LockHeld on SQLite when another live process sends. Re-entrant within a process.
    """
    name = sender_lock_name(engine, worker)
    key = (engine.url.render_as_string(hide_password=True), name)
    with _held_guard:
        nested = _held.get(key, 0) > 0
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    lock = HeldLock(
        engine,
        name,
        worker,
        refusal="a send is in progress",
        hint="; wait for it to finish, or stop that process first",
    )
    lock.acquire()
    with _held_guard:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_guard:
            del _held[key]
        lock.release()


def worker_alive(session: Session, holder: str) -> bool:
    """Whether the PostgreSQL worker named ``holder`` still lives (by the rule of :func:`holder_alive`)."""
    lock = session.get(Lock, f"{WORKER_PREFIX}{holder}"[:80])
    return lock is not None and lock.holder == holder and holder_alive(lock, utcnow())


def live_workers(session: Session) -> set[str]:
    """Holders of every live ``worker:`` lock."""
    now = utcnow()
    locks = session.scalars(select(Lock).where(Lock.name.like(f"{WORKER_PREFIX}%")))
    return {lock.holder for lock in locks if holder_alive(lock, now)}
