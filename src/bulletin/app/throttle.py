"""Sliding-window rate limits kept in the ``rate_events`` table (shared by every web worker)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bulletin.models import RateEvent, utcnow
from bulletin.models.subscriber import stored_salt

# Events older than this are deleted now and then; no window is longer.
RETENTION = timedelta(days=2)


SALT_KEY = "rate_key_salt"


def _salt(session: Session, *, create: bool = True) -> bytes | None:
    return stored_salt(session, SALT_KEY, create=create)


def rate_key(session: Session, value: str) -> str:
    """A fixed-length key for a value (an address, a name, an IP) so the table never holds it in clear.

    Keyed with this database's secret salt: a plain digest of an address could be matched
    against a list of addresses, so an erased address would remain recognisable.
    """
    salt = _salt(session)
    assert salt is not None
    return _keyed(salt, value)


def existing_rate_key(session: Session, value: str) -> str | None:
    """:func:`rate_key` for a read-only session: None while no event was ever recorded (no salt yet)."""
    salt = _salt(session, create=False)
    return None if salt is None else _keyed(salt, value)


def _keyed(salt: bytes, value: str) -> str:
    return hmac.new(salt, value.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()


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
