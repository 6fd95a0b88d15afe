"""The delivery ledger: one row per (edition, subscriber), moved forward only after the fact.

A row goes ``pending`` -> ``sending`` -> ``sent``, or ``deferred`` (retried with exponential
backoff), ``failed`` or ``skipped``. This module claims due rows
(``sending``), marks each one ``handed_at`` in a committed transaction just before its message's
data goes to the server, and records outcomes (``sent`` only after the server's 250), with the
retry and bounce rules. It reads the edition's state itself (paused, cancelled). The list is
frozen by :mod:`bulletin.mta.recipients`.
:mod:`bulletin.mta.sender` drives it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Engine,
    Table,
    and_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from bulletin.app.subscribers import set_status
from bulletin.config import Settings
from bulletin.db import is_sqlite, reading, transaction
from bulletin.errors import NotFound
from bulletin.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    Subscriber,
    SubscriberStatus,
)
from bulletin.mta import mail
from bulletin.mta.clock import SYSTEM_CLOCK, Clock
from bulletin.mta.recipients import freeze_summary

log = logging.getLogger(__name__)

D = DeliveryState
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
    # Rows found handed over without an answer (their sender died) and sent again: maybe delivered twice.
    uncertain: int = 0
    uncertain_addresses: list[str] = field(default_factory=list)
    bounced: int = 0
    halted: bool = False
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    next_retry_at: datetime | None = None
    editions: list[int] = field(default_factory=list)
    # Transactions the sender's journal committed (marks and answers, grouped).
    commits: int = 0

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
        self.commits += other.commits
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
            "journal_commits": self.commits,
            "next_retry_at": self.next_retry_at.isoformat() if self.next_retry_at else None,
        }


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


def in_chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------
# Claiming, handing over and recording
#
# A row is claimed (``sending``, ``claimed_by`` set, ``handed_at`` NULL) in batches ahead of the
# connections. Just before a connection writes a message's data to the server, the row's
# ``handed_at`` is committed (:func:`mark_handed`); the server's answer is committed as soon as it
# arrives (:func:`write_outcomes`). After a crash, a claimed row without ``handed_at`` never
# reached the server and is simply due again; one with ``handed_at`` may have been delivered and
# is counted uncertain (:func:`recover_interrupted`).


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    variant_id: int
    message_id: str
    email: str
    name: str | None
    # The subscriber's link nonce, signed into their unsubscribe and preferences links.
    link_nonce: str = ""


@dataclass
class Outcome:
    delivery_id: int
    subscriber_id: int
    email: str
    reply: str
    # sent, temporary, permanent, released (not handed over: goes back to pending), or unknown
    # (handed over, answer unknown: nothing is written, the next run reports the row uncertain)
    kind: str
    bounce: bool = False


HALTED = (EditionStatus.PAUSED, EditionStatus.CANCELLED)


def is_halted(session: Session, edition_id: int) -> bool:
    """True when the edition is paused or cancelled: nothing more is handed over."""
    status = session.scalar(select(Edition.status).where(Edition.id == edition_id))
    return status in HALTED


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


def claim_batch(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    worker: str,
    limit: int,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[list[Claimed], int, bool]:
    """Move up to ``limit`` due rows to ``sending`` (committed); return them, the skipped count, halted.

    Rows of subscribers who are no longer active are marked ``skipped`` instead. Nothing is
    claimed when the edition is paused or cancelled.
    """
    now = clock.now()
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
                Subscriber.link_nonce,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.id.in_(ids))
            .order_by(Delivery.id)
        ).all()
        claimed: list[Claimed] = []
        gone: dict[str, list[int]] = {}
        for delivery_id, subscriber_id, variant_id, message_id, email, name, status, nonce in rows:
            if SubscriberStatus(status) is SubscriberStatus.ACTIVE:
                message_id = message_id or mail.make_message_id(settings, edition_id, subscriber_id)
                claimed.append(Claimed(delivery_id, subscriber_id, variant_id, message_id, email, name, nonce))
            else:
                gone.setdefault(SubscriberStatus(status).value, []).append(delivery_id)
        for chunk in in_chunks([c.delivery_id for c in claimed], 500):
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk))
                .values(state=D.SENDING, claimed_by=worker, handed_at=None, updated_at=now)
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


def mark_handed(session: Session, claims: list[Claimed], worker: str, now: datetime) -> None:
    """Record that these rows are about to be handed to the server (with their Message-ID)."""
    if not claims:
        return
    table = cast(Table, Delivery.__table__)
    session.connection().execute(
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.state == D.SENDING, table.c.claimed_by == worker)
        .values(handed_at=now, message_id=bindparam("b_message_id")),
        [{"b_id": c.delivery_id, "b_message_id": c.message_id} for c in claims],
    )


def retry_delay(settings: Settings, attempts: int) -> float:
    """Seconds before retry number ``attempts`` (1 = first retry): doubling from retry_first up to retry_max."""
    delivery = settings.delivery
    return float(min(delivery.retry_first * (2 ** max(attempts - 1, 0)), delivery.retry_max))


def _gives_up(settings: Settings, attempts: int) -> bool:
    """True when the retries scheduled so far already add up to ``give_up_after``."""
    waited = sum(retry_delay(settings, n) for n in range(1, attempts))
    return waited + retry_delay(settings, attempts) > settings.delivery.give_up_after


def record_outcomes(
    engine: Engine,
    settings: Settings,
    outcomes: list[Outcome],
    worker: str,
    report: SendReport,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    """Write what happened to claimed rows in one short transaction (see :func:`write_outcomes`)."""
    if not outcomes:
        return
    with transaction(engine) as session:
        write_outcomes(session, settings, outcomes, worker, report, clock.now())


def write_outcomes(
    session: Session, settings: Settings, outcomes: list[Outcome], worker: str, report: SendReport, now: datetime
) -> None:
    """Write what happened to claimed rows in the caller's transaction, and apply the bounce rule."""
    if not outcomes:
        return
    table = cast(Table, Delivery.__table__)
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
    for chunk in in_chunks(released, 500):
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(chunk), mine)
            .values(state=D.PENDING, claimed_by=None, handed_at=None)
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


def recover_interrupted(
    engine: Engine,
    edition_id: int | None,
    worker: str,
    *,
    live: Callable[[Session], set[str]] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> list[tuple[int, str]]:
    """Put rows left in ``sending`` by a dead sender back in the queue; return the uncertain ones.

    A row that was claimed but never handed over becomes due again silently. A row handed over
    whose answer was not recorded may have been delivered: it is counted uncertain, and its
    (delivery id, address) is returned. With ``live`` (PostgreSQL: the holders still alive),
    rows claimed by live workers are left alone; without it (SQLite, under the sender lock)
    every such row is a leftover.
    """
    now = clock.now()
    with transaction(engine) as session:
        query = (
            select(Delivery.id, Subscriber.email, Delivery.claimed_by, Delivery.handed_at)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.state == D.SENDING)
        )
        if edition_id is not None:
            query = query.where(Delivery.edition_id == edition_id)
        if not is_sqlite(engine):
            query = query.with_for_update(of=Delivery, skip_locked=True)
        rows = session.execute(query).all()
        if live is not None:
            alive = live(session) | {worker}
            rows = [row for row in rows if row[2] not in alive]
        handed = [row for row in rows if row[3] is not None]
        untouched = [row[0] for row in rows if row[3] is None]
        for chunk in in_chunks([row[0] for row in handed], 500):
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.state == D.SENDING)
                .values(
                    state=D.PENDING,
                    uncertain=Delivery.uncertain + 1,
                    claimed_by=None,
                    handed_at=None,
                    next_attempt_at=None,
                    last_reply=INTERRUPTED_REASON,
                    updated_at=now,
                )
            )
        for chunk in in_chunks(untouched, 500):
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.state == D.SENDING)
                .values(state=D.PENDING, claimed_by=None, next_attempt_at=None, updated_at=now)
            )
    return [(row[0], row[1]) for row in handed]


def _apply_bounce_rule(session: Session, settings: Settings, outcomes: list[Outcome], worker: str) -> int:
    """Count a permanent failure against each address; make it ``bounced`` after ``bounce_after`` editions."""
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


def sending_editions(engine: Engine) -> list[int]:
    """Editions in ``sending`` status, oldest first."""
    with reading(engine) as session:
        return list(
            session.scalars(select(Edition.id).where(Edition.status == EditionStatus.SENDING).order_by(Edition.id))
        )


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
