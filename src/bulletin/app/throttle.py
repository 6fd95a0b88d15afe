"""Sliding-window rate limits kept in the ``rate_events`` table (shared by every web worker)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bulletin.models import RateEvent, utcnow

# Events older than this are deleted now and then; no window is longer.
RETENTION = timedelta(days=2)


def rate_key(value: str) -> str:
    """A fixed-length key for a value (an address, a name) so the table never holds it in clear."""
    return hashlib.sha256(value.strip().lower().encode("utf-8")).hexdigest()


def count_recent(session: Session, kind: str, key: str, window: timedelta, *, now: datetime | None = None) -> int:
    """How many events of this kind and key happened within the window."""
    since = (now or utcnow()) - window
    total = session.scalar(
        select(func.count())
        .select_from(RateEvent)
        .where(RateEvent.kind == kind, RateEvent.key == key, RateEvent.at > since)
    )
    return int(total or 0)


def record_event(session: Session, kind: str, key: str, *, now: datetime | None = None) -> None:
    """Log one event; also drops this kind's events older than the retention period."""
    at = now or utcnow()
    session.add(RateEvent(kind=kind, key=key, at=at))
    session.execute(delete(RateEvent).where(RateEvent.kind == kind, RateEvent.at < at - RETENTION))


def clear_events(session: Session, kind: str, key: str) -> None:
    """Forget the events of one key (a successful login clears its failures)."""
    session.execute(delete(RateEvent).where(RateEvent.kind == kind, RateEvent.key == key))


def allowed(
    session: Session, kind: str, key: str, limit: int, window: timedelta, *, now: datetime | None = None
) -> bool:
    """True while fewer than ``limit`` events happened in the window."""
    return count_recent(session, kind, key, window, now=now) < limit
