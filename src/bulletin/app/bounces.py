"""Acting on mail that came back: bounced, counted, unsubscribed or ignored, once per message.

:mod:`bulletin.mta.bounces` says what a message is; :func:`apply_report` changes the subscriber,
the delivery row and the history accordingly, and records the message so it never acts twice.
The caller owns the transaction.

- hard bounce (5.x.x): the subscriber is ``bounced`` at once;
- soft bounce (4.x.x): counted; ``delivery.soft_bounce_limit`` of them within
  ``delivery.soft_bounce_days`` make the subscriber ``bounced``;
- complaint (ARF): unsubscribed, and the complaint recorded;
- unsubscribe request (mailto): unsubscribed, as with the one-click link;
- auto-reply: recorded as ignored; nobody's status changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulletin.app.subscribers import find_subscriber, record_event, set_status
from bulletin.config import Settings
from bulletin.models import Delivery, InboundKind, InboundMail, Subscriber, SubscriberStatus, utcnow

ACTOR = "bounces"


@dataclass(frozen=True)
class Report:
    """A classified message, as :func:`apply_report` needs it."""

    kind: InboundKind
    message_key: str
    message_id: str | None
    recipient: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    delivery_id: int | None = None
    edition_subscriber: tuple[int, int] | None = None


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_report` did: ``action`` is bounced, counted, unsubscribed, ignored, none or duplicate."""

    action: str
    email: str | None = None
    edition_id: int | None = None


def already_processed(session: Session, message_key: str) -> bool:
    return session.scalar(select(InboundMail.id).where(InboundMail.message_key == message_key)) is not None


def _find_target(session: Session, report: Report) -> tuple[Delivery | None, Subscriber | None]:
    """The delivery and subscriber a report is about: by VERP token, quoted Message-ID, then address."""
    delivery = session.get(Delivery, report.delivery_id) if report.delivery_id is not None else None
    if delivery is None and report.edition_subscriber is not None:
        edition_id, subscriber_id = report.edition_subscriber
        delivery = session.scalars(
            select(Delivery).where(Delivery.edition_id == edition_id, Delivery.subscriber_id == subscriber_id)
        ).one_or_none()
        if delivery is None:
            return None, session.get(Subscriber, subscriber_id)
    if delivery is not None:
        return delivery, session.get(Subscriber, delivery.subscriber_id)
    # Only a bounce names the failed address itself; a complaint's or request's From may be anyone.
    if report.recipient and report.kind in (InboundKind.HARD_BOUNCE, InboundKind.SOFT_BOUNCE):
        return None, find_subscriber(session, report.recipient)
    return None, None


def _describe(report: Report, delivery: Delivery | None) -> str:
    words = [report.kind.value]
    if report.status:
        words.append(report.status)
    text = " ".join(words)
    if report.diagnostic:
        text += f": {report.diagnostic}"
    if delivery is not None:
        text += f" (edition {delivery.edition_id})"
    return text[:2000]


def soft_bounces_within(session: Session, subscriber_id: int, since: datetime) -> int:
    return int(
        session.scalar(
            select(func.count(InboundMail.id)).where(
                InboundMail.subscriber_id == subscriber_id,
                InboundMail.kind == InboundKind.SOFT_BOUNCE,
                InboundMail.received_at >= since,
            )
        )
        or 0
    )


def apply_report(session: Session, settings: Settings, report: Report, *, now: datetime | None = None) -> Applied:
    """Act on one classified message, once: a message already recorded does nothing (``duplicate``)."""
    now = now or utcnow()
    if already_processed(session, report.message_key):
        return Applied("duplicate")
    delivery, subscriber = _find_target(session, report)
    record = InboundMail(
        message_key=report.message_key,
        message_id=(report.message_id or "")[:998] or None,
        kind=report.kind,
        delivery_id=delivery.id if delivery else None,
        edition_id=delivery.edition_id if delivery else None,
        subscriber_id=subscriber.id if subscriber else None,
        recipient=(report.recipient or "")[:320] or None,
        status=report.status,
        diagnostic=report.diagnostic,
        action="none",
        received_at=now,
    )
    session.add(record)
    # Written now, so that a concurrent run with the same message fails on the unique key.
    session.flush()
    edition_id = delivery.edition_id if delivery else None
    if report.kind is InboundKind.AUTO_REPLY:
        record.action = "ignored"
        return Applied("ignored", subscriber.email if subscriber else None, edition_id)
    if subscriber is None:
        return Applied("none", report.recipient, edition_id)
    description = _describe(report, delivery)
    if delivery is not None:
        delivery.report_kind = report.kind.value
        delivery.report_status = report.status
        delivery.report_detail = report.diagnostic
        delivery.reported_at = now
    record.action = _act(session, settings, report, subscriber, description, now)
    return Applied(record.action, subscriber.email, edition_id)


def _act(
    session: Session, settings: Settings, report: Report, subscriber: Subscriber, description: str, now: datetime
) -> str:
    receiving = subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)
    if report.kind is InboundKind.HARD_BOUNCE:
        subscriber.hard_bounces += 1
        if receiving and set_status(session, subscriber, SubscriberStatus.BOUNCED, ACTOR, detail=description):
            return "bounced"
        record_event(session, subscriber, "bounce", ACTOR, detail=description)
        return "none"
    if report.kind is InboundKind.SOFT_BOUNCE:
        since = now - timedelta(days=settings.delivery.soft_bounce_days)
        count = soft_bounces_within(session, subscriber.id, since)
        limit = settings.delivery.soft_bounce_limit
        if receiving and count >= limit:
            detail = f"{description}; {count} temporary failures in {settings.delivery.soft_bounce_days} days"
            set_status(session, subscriber, SubscriberStatus.BOUNCED, ACTOR, detail=detail)
            return "bounced"
        record_event(session, subscriber, "soft-bounce", ACTOR, detail=f"{description} ({count} of {limit})")
        return "counted"
    if report.kind is InboundKind.COMPLAINT:
        record_event(session, subscriber, "complaint", ACTOR, detail=description)
        return _unsubscribe(session, subscriber, "unsubscribed after a spam complaint (ARF)")
    if report.kind is InboundKind.UNSUBSCRIBE:
        return _unsubscribe(session, subscriber, "unsubscribed via the List-Unsubscribe mailto")
    return "none"


def _unsubscribe(session: Session, subscriber: Subscriber, detail: str) -> str:
    """Stop all mail at once, as the one-click link does (a blocked address stays blocked)."""
    if subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BLOCKED):
        return "none"
    set_status(session, subscriber, SubscriberStatus.UNSUBSCRIBED, ACTOR, detail=detail)
    return "unsubscribed"


def bounce_history(session: Session, subscriber_id: int) -> list[InboundMail]:
    """A subscriber's bounces, complaints and unsubscribe requests, oldest first."""
    return list(
        session.scalars(
            select(InboundMail)
            .where(InboundMail.subscriber_id == subscriber_id, InboundMail.kind != InboundKind.AUTO_REPLY)
            .order_by(InboundMail.received_at, InboundMail.id)
        )
    )


def edition_report_counts(session: Session, edition_id: int) -> dict[str, int]:
    """Bounces, complaints and unsubscribe requests that came back for an edition, by kind."""
    counts = {kind.value: 0 for kind in InboundKind if kind is not InboundKind.AUTO_REPLY}
    rows = session.execute(
        select(InboundMail.kind, func.count(InboundMail.id))
        .where(InboundMail.edition_id == edition_id)
        .group_by(InboundMail.kind)
    )
    for kind, count in rows:
        if kind is not InboundKind.AUTO_REPLY:
            counts[kind.value] = count
    return counts
