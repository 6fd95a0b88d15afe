"""The delivery ledger and the engine that works through it.

One ``deliveries`` row per (edition, subscriber) says where that subscriber's copy stands:
``pending`` -> ``sending`` -> ``sent``, or ``deferred`` (retried with exponential backoff),
``failed`` or ``skipped``. The rules that make a send safe to kill at any moment:

- the recipient list is frozen once, in one transaction, when the send starts;
- a row moves to ``sending`` in a committed transaction *before* its SMTP transaction, and to
  ``sent`` only after the server's 250; no transaction stays open while talking SMTP;
- a row found in ``sending`` by a sender that starts (its previous owner died) may or may not
  have reached the server: it is counted in ``uncertain``, sent again and reported.

On SQLite one sender runs at a time: it holds the ``sender`` row of the ``locks`` table and
keeps its heartbeat fresh; a second one is refused with who holds it. On PostgreSQL any number
of workers claim batches with ``SELECT ... FOR UPDATE SKIP LOCKED``; each keeps a heartbeat
row, and rows left in ``sending`` by a worker whose heartbeat stopped are recovered.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, and_, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from bulletin import links, mail
from bulletin.config import Settings
from bulletin.db import is_sqlite, reading, transaction
from bulletin.errors import BulletinError, Conflict, NotFound
from bulletin.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    EditionVariant,
    Lock,
    Setting,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from bulletin.ratelimit import RateLimiter
from bulletin.smtp import SmtpFailure, SmtpTransport, Transport

log = logging.getLogger(__name__)

D = DeliveryState
SENDER_LOCK = "sender"
HEARTBEAT_SECONDS = 5.0
# A holder whose heartbeat is older than this is taken to be dead.
STALE_AFTER = timedelta(seconds=30)
FREEZE_BATCH = 5000
NO_NEWS_REASON = "skipped: no news for this reader's language and topics in this edition"
INTERRUPTED_REASON = "interrupted while sending (may have been delivered); sent again"


# ---------------------------------------------------------------------------
# Reports


@dataclass
class SendReport:
    """What a run of the sender did."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    # Rows found in ``sending`` (their sender died) and sent again: maybe delivered twice.
    uncertain: int = 0
    uncertain_addresses: list[str] = field(default_factory=list)
    bounced: int = 0
    halted: bool = False
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    next_retry_at: datetime | None = None
    editions: list[int] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.deferred + self.failed + self.skipped

    @property
    def attempted(self) -> int:
        """Messages handed to the SMTP server (or tried), whatever the outcome."""
        return self.sent + self.deferred + self.failed

    def merge(self, other: SendReport) -> None:
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.skipped += other.skipped
        self.uncertain += other.uncertain
        self.uncertain_addresses += other.uncertain_addresses
        self.bounced += other.bounced
        self.halted = self.halted or other.halted
        self.errors = (self.errors + other.errors)[-20:]
        self.elapsed += other.elapsed
        self.editions += other.editions
        if other.next_retry_at and (self.next_retry_at is None or other.next_retry_at < self.next_retry_at):
            self.next_retry_at = other.next_retry_at

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "skipped": self.skipped,
            "uncertain": self.uncertain,
            "uncertain_addresses": self.uncertain_addresses,
            "bounced": self.bounced,
            "halted": self.halted,
            "errors": self.errors,
            "elapsed": round(self.elapsed, 3),
            "next_retry_at": self.next_retry_at.isoformat() if self.next_retry_at else None,
        }


@dataclass
class Progress:
    """Sent so far out of the edition's ledger, for a progress bar."""

    total: int
    done: int
    report: SendReport


# ---------------------------------------------------------------------------
# Freezing the recipient list


def _frozen_key(edition_id: int) -> str:
    return f"send.frozen.{edition_id}"


def freeze_recipients(session: Session, settings: Settings, edition: Edition) -> int:
    """Create the ledger rows of every active subscriber; return how many were added.

    Runs once per edition: the list is frozen in the caller's transaction together with a
    marker, and a later call (a resumed send) adds nobody. Subscribers are read in batches so
    memory does not grow with the list. A subscriber whose variant has no news is recorded as
    ``skipped``; one whose (language, interests) has no rendered variant cannot be recorded and
    is counted in :func:`freeze_summary`.
    """
    if session.get(Setting, _frozen_key(edition.id)) is not None:
        return 0
    variants = {
        (language, interests): (variant_id, item_count)
        for variant_id, language, interests, item_count in session.execute(
            select(
                EditionVariant.id, EditionVariant.language, EditionVariant.interests, EditionVariant.item_count
            ).where(EditionVariant.edition_id == edition.id)
        )
    }
    from bulletin.compose import subscriber_variant

    # The composer's rule for which variant a subscriber reads, memoised per (language, interests).
    chosen: dict[tuple[str, str], tuple[str, str]] = {}
    statement = _insert_ignoring_duplicates(session)
    count = select(func.count(Delivery.id)).where(Delivery.edition_id == edition.id)
    before = session.scalar(count) or 0
    unmatched: dict[str, int] = {}
    last_id = 0
    now = utcnow()
    while True:
        batch = session.execute(
            select(Subscriber.id, Subscriber.language, Subscriber.interests)
            .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id > last_id)
            .order_by(Subscriber.id)
            .limit(FREEZE_BATCH)
        ).all()
        if not batch:
            break
        last_id = batch[-1][0]
        rows = []
        for subscriber_id, language, interests in batch:
            pair = chosen.get((language, interests))
            if pair is None:
                pair = chosen[language, interests] = subscriber_variant(settings, language, interests or "")
            variant = variants.get(pair)
            if variant is None:
                key = f"{pair[0]}|{pair[1]}"
                unmatched[key] = unmatched.get(key, 0) + 1
                continue
            variant_id, item_count = variant
            rows.append(
                {
                    "edition_id": edition.id,
                    "subscriber_id": subscriber_id,
                    "variant_id": variant_id,
                    "state": D.PENDING if item_count else D.SKIPPED,
                    "last_reply": None if item_count else NO_NEWS_REASON,
                    "attempts": 0,
                    "uncertain": 0,
                    "message_id": mail.make_message_id(settings, edition.id, subscriber_id),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        if rows:
            session.connection().execute(statement, rows)
    added = (session.scalar(count) or 0) - before
    session.add(
        Setting(
            key=_frozen_key(edition.id),
            value=json.dumps({"frozen_at": now.isoformat(), "added": added, "unmatched": unmatched}),
        )
    )
    session.flush()
    return added


def _insert_ignoring_duplicates(session: Session) -> Any:
    """A Core INSERT into the ledger that leaves an existing (edition, subscriber) row alone."""
    table = cast(Table, Delivery.__table__)
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
    if session.get_bind().dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
    return insert(table)


def freeze_summary(session: Session, edition_id: int) -> dict[str, Any] | None:
    """When the list was frozen, how many rows, and active subscribers left out for lack of a variant."""
    marker = session.get(Setting, _frozen_key(edition_id))
    return dict(json.loads(marker.value)) if marker else None


def recipients_by_variant(session: Session, settings: Settings, edition_id: int) -> list[dict[str, Any]]:
    """For a dry run: active subscribers per variant of the edition, without touching the ledger."""
    from bulletin.compose import variant_subscriber_counts

    counts = variant_subscriber_counts(session, settings)
    rows: list[dict[str, Any]] = []
    for variant_id, language, interests, subject, item_count in session.execute(
        select(
            EditionVariant.id,
            EditionVariant.language,
            EditionVariant.interests,
            EditionVariant.subject,
            EditionVariant.item_count,
        )
        .where(EditionVariant.edition_id == edition_id)
        .order_by(EditionVariant.language, EditionVariant.interests)
    ):
        rows.append(
            {
                "variant_id": variant_id,
                "key": f"{language}|{interests}",
                "language": language,
                "interests": interests,
                "subject": subject,
                "items": item_count,
                "recipients": counts.pop((language, interests), 0),
            }
        )
    for (language, interests), count in sorted(counts.items()):
        rows.append(
            {
                "variant_id": None,
                "key": f"{language}|{interests}",
                "language": language,
                "interests": interests,
                "subject": None,
                "items": 0,
                "recipients": count,
            }
        )
    return rows


def iter_recipients(
    session: Session, settings: Settings, language: str, interests: str, batch: int = 1000
) -> Iterator[str]:
    """Addresses of the active subscribers who read one variant, streamed in id order."""
    from bulletin.compose import subscriber_variant

    last_id = 0
    while True:
        rows = session.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.language, Subscriber.interests)
            .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id > last_id)
            .order_by(Subscriber.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        last_id = rows[-1][0]
        for _, email, their_language, their_interests in rows:
            if subscriber_variant(settings, their_language, their_interests or "") == (language, interests):
                yield email


# ---------------------------------------------------------------------------
# Counts and status


def delivery_counts(session: Session, edition_id: int) -> dict[str, int]:
    """Deliveries of the edition by state (every state present, zero if none)."""
    counts = {state.value: 0 for state in D}
    for state, count in session.execute(
        select(Delivery.state, func.count(Delivery.id))
        .where(Delivery.edition_id == edition_id)
        .group_by(Delivery.state)
    ):
        counts[D(state).value] = int(count)
    return counts


def delivery_status(
    session: Session, edition_id: int, *, errors: int = 10, uncertain: int | None = 100
) -> dict[str, Any]:
    """Counts by state, the latest errors and the deliveries that may have arrived twice (all if None)."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFound(f"no edition {edition_id}")
    counts = delivery_counts(session, edition_id)
    error_rows = session.execute(
        select(Subscriber.email, Delivery.state, Delivery.attempts, Delivery.last_reply, Delivery.updated_at)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.edition_id == edition_id, Delivery.state.in_((D.DEFERRED, D.FAILED)))
        .order_by(Delivery.updated_at.desc(), Delivery.id.desc())
        .limit(errors)
    ).all()
    uncertain_total = session.scalar(
        select(func.count(Delivery.id)).where(Delivery.edition_id == edition_id, Delivery.uncertain > 0)
    )
    uncertain_rows = session.execute(
        select(Subscriber.email, Delivery.state, Delivery.uncertain, Delivery.sent_at)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.edition_id == edition_id, Delivery.uncertain > 0)
        .order_by(Delivery.id)
        .limit(uncertain)
    ).all()
    next_retry = session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.edition_id == edition_id, Delivery.state == D.DEFERRED
        )
    )
    summary = freeze_summary(session, edition_id)
    return {
        "edition": edition_id,
        "status": edition.status.value,
        "total": sum(counts.values()),
        "counts": counts,
        "next_retry_at": next_retry.isoformat() if next_retry else None,
        "frozen_at": summary["frozen_at"] if summary else None,
        "without_variant": summary["unmatched"] if summary else {},
        "last_errors": [
            {
                "email": email,
                "state": D(state).value,
                "attempts": attempts,
                "reply": reply,
                "at": at.isoformat() if at else None,
            }
            for email, state, attempts, reply, at in error_rows
        ],
        "uncertain_total": int(uncertain_total or 0),
        "uncertain": [
            {"email": email, "state": D(state).value, "times": times, "sent_at": sent.isoformat() if sent else None}
            for email, state, times, sent in uncertain_rows
        ],
    }


# ---------------------------------------------------------------------------
# Holders: the SQLite sender lock and the PostgreSQL worker heartbeats


def worker_name(label: str = "sender") -> str:
    """A name for this process: ``host:pid:label``."""
    return f"{socket.gethostname()}:{os.getpid()}:{label}"


def _holder_is_alive(lock: Lock, now: datetime) -> bool:
    host, _, rest = lock.holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return now - lock.heartbeat_at < STALE_AFTER


class Holder:
    """A row of ``locks`` kept fresh by a heartbeat thread while this process sends."""

    def __init__(self, engine: Engine, name: str, holder: str, *, exclusive: bool) -> None:
        self.engine = engine
        self.name = name
        self.holder = holder
        self.exclusive = exclusive
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        now = utcnow()
        with transaction(self.engine) as session:
            query = select(Lock).where(Lock.name == self.name)
            if not is_sqlite(self.engine):
                query = query.with_for_update()
            lock = session.scalars(query).first()
            if lock is not None and lock.holder != self.holder and self.exclusive and _holder_is_alive(lock, now):
                seconds = int((now - lock.heartbeat_at).total_seconds())
                raise Conflict(
                    f"a send is in progress: {lock.holder} has held the sender lock since "
                    f"{lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC (heartbeat {seconds}s ago); "
                    "wait for it to finish, or stop that process first"
                )
            if lock is None:
                session.add(Lock(name=self.name, holder=self.holder, acquired_at=now, heartbeat_at=now))
            else:
                lock.holder = self.holder
                lock.acquired_at = now
                lock.heartbeat_at = now
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with transaction(self.engine) as session:
                    session.execute(
                        update(Lock)
                        .where(Lock.name == self.name, Lock.holder == self.holder)
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:  # a busy database must not kill the heartbeat; the next beat retries
                log.warning("heartbeat of %s failed", self.name, exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with transaction(self.engine) as session:
            session.query(Lock).filter(Lock.name == self.name, Lock.holder == self.holder).delete()


# Holders taken by this process, so that a command holding the lock can call run_send.
_held: dict[tuple[str, str], int] = {}
_held_lock = threading.Lock()


@contextmanager
def sending_as(engine: Engine, worker: str) -> Iterator[None]:
    """Hold the right to send: the single sender lock on SQLite, a worker heartbeat on PostgreSQL.

    Raises Conflict on SQLite when another live process holds the lock. Re-entrant within a process.
    """
    name = SENDER_LOCK if is_sqlite(engine) else f"worker:{worker}"[:80]
    key = (engine.url.render_as_string(hide_password=True), name)
    with _held_lock:
        nested = _held.get(key, 0) > 0
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    holder = Holder(engine, name, worker, exclusive=True)
    holder.acquire()
    with _held_lock:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_lock:
            del _held[key]
        holder.release()


def recover_interrupted(engine: Engine, edition_id: int | None, worker: str) -> list[tuple[int, str]]:
    """Put rows left in ``sending`` by a dead sender back in the queue, counting them uncertain.

    Returns (delivery id, address) of each. On SQLite the caller holds the sender lock, so every
    such row is a leftover; on PostgreSQL only rows of workers whose heartbeat stopped are.
    """
    now = utcnow()
    with transaction(engine) as session:
        query = (
            select(Delivery.id, Subscriber.email, Delivery.claimed_by)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.state == D.SENDING)
        )
        if edition_id is not None:
            query = query.where(Delivery.edition_id == edition_id)
        rows = session.execute(query).all()
        if not is_sqlite(engine):
            live = {
                lock.holder
                for lock in session.scalars(select(Lock).where(Lock.name.like("worker:%")))
                if _holder_is_alive(lock, now)
            }
            live.add(worker)
            rows = [row for row in rows if row[2] not in live]
        ids = [row[0] for row in rows]
        for chunk in _chunks(ids, 500):
            statement = (
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.state == D.SENDING)
                .values(
                    state=D.PENDING,
                    uncertain=Delivery.uncertain + 1,
                    claimed_by=None,
                    next_attempt_at=None,
                    last_reply=INTERRUPTED_REASON,
                    updated_at=now,
                )
            )
            session.execute(statement)
    return [(row[0], row[1]) for row in rows]


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------
# Claiming and recording


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    variant_id: int
    message_id: str
    email: str
    name: str | None


@dataclass
class Outcome:
    delivery_id: int
    subscriber_id: int
    email: str
    reply: str
    # sent, temporary, permanent, released (not attempted: goes back to pending)
    kind: str
    bounce: bool = False


def _due_queries(edition_id: int, now: datetime) -> list[Any]:
    # Two simple queries rather than one OR, so each walks the (edition, state, next attempt) index.
    return [
        select(Delivery.id).where(
            Delivery.edition_id == edition_id, Delivery.state == D.PENDING, Delivery.next_attempt_at.is_(None)
        ),
        select(Delivery.id).where(
            Delivery.edition_id == edition_id, Delivery.state == D.DEFERRED, Delivery.next_attempt_at <= now
        ),
    ]


def claim_batch(engine: Engine, edition_id: int, worker: str, limit: int) -> tuple[list[Claimed], int, bool]:
    """Move up to ``limit`` due rows to ``sending`` (committed); return them, the skipped count, halted.

    Rows of subscribers who are no longer active are marked ``skipped`` instead. Nothing is
    claimed when the edition is paused or cancelled.
    """
    from bulletin.workflow import is_halted

    now = utcnow()
    with transaction(engine) as session:
        if is_halted(session, edition_id):
            return [], 0, True
        ids: list[int] = []
        for query in _due_queries(edition_id, now):
            query = query.limit(limit - len(ids))
            if not is_sqlite(engine):
                query = query.with_for_update(skip_locked=True)
            ids += session.scalars(query)
            if len(ids) >= limit:
                break
        if not ids:
            return [], 0, False
        rows = session.execute(
            select(
                Delivery.id,
                Delivery.subscriber_id,
                Delivery.variant_id,
                Delivery.message_id,
                Subscriber.email,
                Subscriber.name,
                Subscriber.status,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.id.in_(ids))
            .order_by(Delivery.id)
        ).all()
        claimed: list[Claimed] = []
        gone: dict[str, list[int]] = {}
        for delivery_id, subscriber_id, variant_id, message_id, email, name, status in rows:
            if SubscriberStatus(status) is SubscriberStatus.ACTIVE:
                claimed.append(Claimed(delivery_id, subscriber_id, variant_id, message_id, email, name))
            else:
                gone.setdefault(SubscriberStatus(status).value, []).append(delivery_id)
        if claimed:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_([c.delivery_id for c in claimed]))
                .values(state=D.SENDING, claimed_by=worker, updated_at=now)
            )
        for status_name, gone_ids in gone.items():
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(gone_ids))
                .values(
                    state=D.SKIPPED,
                    claimed_by=None,
                    last_reply=f"skipped: subscriber is {status_name} (changed after the send started)",
                    updated_at=now,
                )
            )
        return claimed, sum(len(v) for v in gone.values()), False


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds before retry number ``attempts`` (1 = first retry): doubling from retry_first up to retry_max."""
    delivery = settings.delivery
    return float(min(delivery.retry_first * (2 ** max(attempts - 1, 0)), delivery.retry_max))


def _gives_up(settings: Settings, attempts: int) -> bool:
    """True when the retries scheduled so far already add up to ``give_up_after``."""
    waited = sum(retry_delay(settings, n) for n in range(1, attempts))
    return waited + retry_delay(settings, attempts) > settings.delivery.give_up_after


def record_outcomes(
    engine: Engine, settings: Settings, outcomes: list[Outcome], worker: str, report: SendReport
) -> None:
    """Write what happened to claimed rows, in one short transaction, and apply the bounce rule."""
    if not outcomes:
        return
    now = utcnow()
    table = cast(Table, Delivery.__table__)
    with transaction(engine) as session:
        mine = and_(Delivery.state == D.SENDING, Delivery.claimed_by == worker)
        sent = [o for o in outcomes if o.kind == "sent"]
        if sent:
            # Core executemany: one statement for the whole group, no ORM objects.
            session.connection().execute(
                update(table)
                .where(table.c.id == bindparam("b_id"), table.c.state == D.SENDING, table.c.claimed_by == worker)
                .values(
                    state=D.SENT,
                    attempts=table.c.attempts + 1,
                    last_reply=bindparam("b_reply"),
                    sent_at=now,
                    updated_at=now,
                    claimed_by=None,
                    next_attempt_at=None,
                ),
                [{"b_id": o.delivery_id, "b_reply": o.reply[:1000]} for o in sent],
            )
            report.sent += len(sent)
        released = [o.delivery_id for o in outcomes if o.kind == "released"]
        for chunk in _chunks(released, 500):
            session.execute(
                update(Delivery).where(Delivery.id.in_(chunk), mine).values(state=D.PENDING, claimed_by=None)
            )
        temporary = [o for o in outcomes if o.kind == "temporary"]
        if temporary:
            attempts = dict(
                session.execute(
                    select(Delivery.id, Delivery.attempts).where(Delivery.id.in_([o.delivery_id for o in temporary]))
                ).all()
            )
            for outcome in temporary:
                tries = attempts.get(outcome.delivery_id, 0) + 1
                if _gives_up(settings, tries):
                    values: dict[str, Any] = {
                        "state": D.FAILED,
                        "last_reply": f"gave up after {tries} attempts: {outcome.reply}"[:1000],
                        "next_attempt_at": None,
                    }
                    report.failed += 1
                else:
                    next_at = now + timedelta(seconds=retry_delay(settings, tries))
                    values = {"state": D.DEFERRED, "last_reply": outcome.reply[:1000], "next_attempt_at": next_at}
                    report.deferred += 1
                    if report.next_retry_at is None or next_at < report.next_retry_at:
                        report.next_retry_at = next_at
                session.execute(
                    update(Delivery)
                    .where(Delivery.id == outcome.delivery_id, mine)
                    .values(attempts=tries, claimed_by=None, updated_at=now, **values)
                )
                report.errors = [*report.errors[-19:], f"{outcome.email}: {outcome.reply}"]
        permanent = [o for o in outcomes if o.kind == "permanent"]
        for outcome in permanent:
            session.execute(
                update(Delivery)
                .where(Delivery.id == outcome.delivery_id, mine)
                .values(
                    state=D.FAILED,
                    attempts=Delivery.attempts + 1,
                    last_reply=outcome.reply[:1000],
                    claimed_by=None,
                    next_attempt_at=None,
                    updated_at=now,
                )
            )
            report.failed += 1
            report.errors = [*report.errors[-19:], f"{outcome.email}: {outcome.reply}"]
        bounced = [o for o in permanent if o.bounce]
        if bounced:
            report.bounced += _apply_bounce_rule(session, settings, bounced, worker)


def _apply_bounce_rule(session: Session, settings: Settings, outcomes: list[Outcome], worker: str) -> int:
    """Count a permanent failure against each address; make it ``bounced`` after ``bounce_after`` editions."""
    from bulletin.subscribers import set_status

    ids = [o.subscriber_id for o in outcomes]
    replies = {o.subscriber_id: o.reply for o in outcomes}
    session.execute(update(Subscriber).where(Subscriber.id.in_(ids)).values(hard_bounces=Subscriber.hard_bounces + 1))
    over = session.scalars(
        select(Subscriber).where(
            Subscriber.id.in_(ids),
            Subscriber.hard_bounces >= settings.delivery.bounce_after,
            Subscriber.status == SubscriberStatus.ACTIVE,
        )
    ).all()
    for subscriber in over:
        set_status(
            session,
            subscriber,
            SubscriberStatus.BOUNCED,
            f"sender {worker}",
            detail=f"failed permanently in {subscriber.hard_bounces} editions; last reply: {replies[subscriber.id]}",
        )
    return len(over)


# ---------------------------------------------------------------------------
# The engine


class _Templates:
    """Message templates of an edition's variants, built once each on first use."""

    def __init__(self, engine: Engine, settings: Settings, edition_id: int) -> None:
        self.engine = engine
        self.settings = settings
        self.edition_id = edition_id
        self.signer = mail.DkimSigner.from_settings(settings)
        self._cache: dict[int, mail.VariantTemplate] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()

    def _feedback_id(self, language: str) -> str:
        # Gmail's Feedback-ID: campaign:customer:mailtype:sender, to group complaints per edition.
        return f"{self.edition_id}.{language}:bulletin:newsletter:{self.settings.sender.list_id}"

    def get(self, variant_id: int) -> mail.VariantTemplate:
        template = self._cache.get(variant_id)
        if template is not None:
            return template
        # One lock per variant: a connection waits only for the template it needs.
        with self._lock:
            lock = self._locks.setdefault(variant_id, threading.Lock())
        with lock:
            template = self._cache.get(variant_id)
            if template is None:
                template = self._cache[variant_id] = self._build(variant_id)
        return template

    def _build(self, variant_id: int) -> mail.VariantTemplate:
        with reading(self.engine) as session:
            variant = session.get(EditionVariant, variant_id)
            if variant is None:
                raise BulletinError(f"variant {variant_id} of edition {self.edition_id} is missing")
            return mail.VariantTemplate.build(
                self.settings,
                subject=variant.subject,
                html=variant.html,
                text=variant.text,
                extra_headers={"Feedback-ID": self._feedback_id(variant.language)},
                signer=self.signer,
            )


TransportFactory = Callable[[Settings], Transport]


class _Connections:
    """The SMTP connection threads, fed by one thread that personalises the messages.

    Personalising the next messages while the connections wait for the server's replies keeps
    each connection busy: a connection only ever takes a ready message and hands it over.
    """

    def __init__(
        self,
        settings: Settings,
        templates: _Templates,
        limiter: RateLimiter,
        transport_factory: TransportFactory,
        results: queue.Queue[Outcome | BaseException],
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.limiter = limiter
        self.transport_factory = transport_factory
        self.results = results
        self.work: queue.Queue[Claimed | None] = queue.Queue()
        # A few messages ready per connection; bounded so memory does not grow with the batch.
        self.ready: queue.Queue[tuple[Claimed, bytes | BaseException] | None] = queue.Queue(
            maxsize=4 * settings.smtp.connections
        )
        self.stop = threading.Event()
        self.connected_once = threading.Event()
        self.preparer = threading.Thread(target=self._prepare, name="personalise", daemon=True)
        self.threads = [
            threading.Thread(target=self._run, name=f"smtp-{n}", daemon=True) for n in range(settings.smtp.connections)
        ]
        self.preparer.start()
        for thread in self.threads:
            thread.start()

    def _release(self, item: Claimed) -> None:
        self.results.put(Outcome(item.delivery_id, item.subscriber_id, item.email, "", "released"))

    def _prepare(self) -> None:
        settings = self.settings
        secret = settings.secret_key
        base = settings.web.base_url.rstrip("/")
        unsubscribe, preferences = base + links.PATHS["unsubscribe"], base + links.PATHS["preferences"]
        while True:
            item = self.work.get()
            if item is None:
                for _ in self.threads:
                    self.ready.put(None)
                return
            if self.stop.is_set():
                self._release(item)
                continue
            try:
                template = self.templates.get(item.variant_id)
                data: bytes | BaseException = template.personalise_for_smtp(
                    mail.Recipient(
                        email=item.email,
                        name=item.name,
                        message_id=item.message_id,
                        unsubscribe_url=unsubscribe
                        + links.make_token(secret, "unsubscribe", item.subscriber_id, item.email),
                        preferences_url=preferences
                        + links.make_token(secret, "preferences", item.subscriber_id, item.email),
                    )
                )
            except Exception as exc:  # reported by the connection that takes it
                data = exc
            self.ready.put((item, data))

    def _run(self) -> None:
        transport = self.transport_factory(self.settings)
        mail_from = self.settings.sender.from_address
        try:
            while True:
                entry = self.ready.get()
                if entry is None:
                    return
                item, data = entry
                if self.stop.is_set():
                    self._release(item)
                    continue
                outcome = self._send(transport, mail_from, item, data)
                if outcome is not None:
                    self.results.put(outcome)
        finally:
            with suppress(Exception):
                transport.close()

    def _send(self, transport: Transport, mail_from: str, item: Claimed, data: bytes | BaseException) -> Outcome | None:
        """Hand one message over; return its outcome, or None when the whole send must stop."""
        try:
            if isinstance(data, BaseException):
                raise data
            self.limiter.acquire()
            reply = transport.send_bytes(mail_from, item.email, data, stuffed=True)
            self.connected_once.set()
            return Outcome(item.delivery_id, item.subscriber_id, item.email, reply, "sent")
        except SmtpFailure as failure:
            if failure.stage == "connect" and failure.temporary and not self.connected_once.is_set():
                # The server cannot be reached at all: stop rather than defer every row.
                self._abort(item, BulletinError(f"SMTP server unreachable: {failure.reply}"))
                return None
            return Outcome(
                item.delivery_id,
                item.subscriber_id,
                item.email,
                failure.reply if failure.stage != "connect" else f"connect: {failure.reply}",
                "temporary" if failure.temporary else "permanent",
                bounce=failure.is_recipient_bounce,
            )
        except BulletinError as exc:  # SMTP settings to fix, an unreadable DKIM key, a missing variant
            self._abort(item, exc)
        except Exception as exc:  # a bug must not leave the row claimed forever
            log.exception("sending to %s failed", item.email)
            self._abort(item, exc)
        return None

    def _abort(self, item: Claimed, error: BaseException) -> None:
        self._release(item)
        self.results.put(error)
        self.stop.set()

    def shutdown(self) -> None:
        self.work.put(None)
        self.preparer.join()
        for thread in self.threads:
            thread.join()


def _total(engine: Engine, edition_id: int) -> tuple[int, int]:
    with reading(engine) as session:
        counts = delivery_counts(session, edition_id)
    total = sum(counts.values())
    return total, counts["sent"] + counts["failed"] + counts["skipped"]


def _next_due(engine: Engine, edition_id: int) -> datetime | None:
    with reading(engine) as session:
        return session.scalar(
            select(func.min(Delivery.next_attempt_at)).where(
                Delivery.edition_id == edition_id, Delivery.state.in_((D.DEFERRED, D.PENDING))
            )
        )


def run_send(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    *,
    worker: str,
    wait_for_retries: bool = False,
    progress: Callable[[Progress], None] | None = None,
    transport_factory: TransportFactory = SmtpTransport,
    limiter: RateLimiter | None = None,
) -> SendReport:
    """Send every due delivery of the edition; stop when none is due or the edition is halted.

    With ``wait_for_retries`` it also waits for deferred deliveries to come due and sends them,
    until every row is settled. Raises Conflict if another sender holds the SQLite lock, and
    BulletinError when the SMTP settings are wrong or the server cannot be reached (the rows
    not yet attempted go back to the queue untouched).
    """
    with reading(engine) as session:
        edition = session.get(Edition, edition_id)
        if edition is None:
            raise NotFound(f"no edition {edition_id}")
    started = time.monotonic()
    report = SendReport(editions=[edition_id])
    with sending_as(engine, worker):
        recovered = recover_interrupted(engine, edition_id, worker)
        report.uncertain = len(recovered)
        report.uncertain_addresses = [email for _, email in recovered[:100]]
        templates = _Templates(engine, settings, edition_id)
        results: queue.Queue[Outcome | BaseException] = queue.Queue()
        connections = _Connections(
            settings, templates, limiter or RateLimiter.from_settings(settings), transport_factory, results
        )
        pending: list[Outcome] = []
        try:
            _drive(
                engine, settings, edition_id, worker, connections, results, pending, report, progress, wait_for_retries
            )
        finally:
            # Interrupted or done: let each connection finish its message, then write down everything known.
            connections.stop.set()
            connections.shutdown()
            while not results.empty():
                item = results.get()
                if isinstance(item, Outcome):
                    pending.append(item)
            record_outcomes(engine, settings, pending, worker, report)
    report.elapsed = time.monotonic() - started
    return report


def _drive(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    worker: str,
    connections: _Connections,
    results: queue.Queue[Outcome | BaseException],
    pending: list[Outcome],
    report: SendReport,
    progress: Callable[[Progress], None] | None,
    wait_for_retries: bool,
) -> None:
    batch_size = max(settings.delivery.batch_size, 1)
    total, done = _total(engine, edition_id) if progress else (0, 0)
    in_flight = 0
    exhausted = False
    failure: BaseException | None = None
    last_write = time.monotonic()
    while True:
        # Keep the connections fed: claim the next batch while the current one is being sent.
        if not exhausted and not report.halted and failure is None and in_flight <= batch_size // 2:
            claimed, skipped, halted = claim_batch(engine, edition_id, worker, batch_size)
            report.skipped += skipped
            done += skipped
            if halted:
                report.halted = True
            elif not claimed:
                exhausted = True
            for item in claimed:
                connections.work.put(item)
            in_flight += len(claimed)
        if in_flight == 0:
            if pending:
                record_outcomes(engine, settings, pending, worker, report)
                pending.clear()
            if failure is not None:
                raise failure
            if report.halted or not wait_for_retries:
                return
            # Everything due is done; wait for the next deferred row to come due.
            next_due = _next_due(engine, edition_id)
            if next_due is None:
                return
            time.sleep(min(max((next_due - utcnow()).total_seconds(), 0.05), 5.0))
            exhausted = False
            continue
        result: Outcome | BaseException | None
        try:
            result = results.get(timeout=0.2)
        except queue.Empty:
            result = None
        while result is not None:
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                pending.append(result)
                in_flight -= 1
                if result.kind in ("sent", "permanent"):
                    done += 1
            try:
                result = results.get_nowait()
            except queue.Empty:
                result = None
        if pending and (len(pending) >= 200 or time.monotonic() - last_write > 0.25 or in_flight == 0):
            record_outcomes(engine, settings, pending, worker, report)
            pending.clear()
            last_write = time.monotonic()
            if progress:
                progress(Progress(total=total, done=done, report=report))


def sending_editions(engine: Engine) -> list[int]:
    """Editions in ``sending`` status, oldest first."""
    with reading(engine) as session:
        return list(
            session.scalars(select(Edition.id).where(Edition.status == EditionStatus.SENDING).order_by(Edition.id))
        )


def retry_due(engine: Engine, settings: Settings, *, worker: str | None = None) -> SendReport:
    """Send the deliveries now due (deferred retries, resumed rows) of every edition that is sending."""
    report = SendReport()
    for edition_id in sending_editions(engine):
        try:
            report.merge(run_send(engine, settings, edition_id, worker=worker or worker_name("retry")))
        except Conflict as exc:
            # Another process is sending (SQLite): it will retry these itself.
            log.info("edition %s: retries left to the running sender: %s", edition_id, exc)
    return report


def finish_if_done(engine: Engine, edition_id: int, actor: str) -> EditionStatus:
    """Mark the edition sent when nothing is left to send; return its status."""
    from bulletin.workflow import finish_sending

    with transaction(engine) as session:
        return finish_sending(session, edition_id, actor).status


def unsettled(engine: Engine, edition_id: int) -> int:
    """Deliveries still pending, sending or deferred."""
    with reading(engine) as session:
        return int(
            session.scalar(
                select(func.count(Delivery.id)).where(
                    Delivery.edition_id == edition_id, Delivery.state.in_((D.PENDING, D.SENDING, D.DEFERRED))
                )
            )
            or 0
        )
