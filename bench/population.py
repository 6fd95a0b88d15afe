"""Bench subscribers: active readers inserted in bulk, as ``subscribers import`` builds their rows.

Shared by ``send_throughput.py`` and ``crash_resume.py``, which import it from this folder (a
script's own folder is first on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from sqlalchemy import Table, insert

from bulletin.db import transaction
from bulletin.models import Subscriber, SubscriberStatus, utcnow
from bulletin.models.subscriber import new_subscriber_values

# (address, display name or None, language, comma-separated interests)
Reader = tuple[str, str | None, str, str]


def _batches(readers: Iterable[Reader], size: int) -> Iterator[list[Reader]]:
    iterator = iter(readers)
    while batch := list(islice(iterator, size)):
        yield batch


def insert_active_subscribers(engine: Any, readers: Iterable[Reader], *, batch: int = 10000) -> None:
    """Insert confirmed, active subscribers, one transaction per ``batch`` rows."""
    table = Subscriber.__table__
    assert isinstance(table, Table)
    now = utcnow()
    for chunk in _batches(readers, batch):
        rows = [
            new_subscriber_values(
                email,
                email,
                name=name,
                language=language,
                interests=interests,
                status=SubscriberStatus.ACTIVE,
                source="bench",
                confirmed=True,
                at=now,
            )
            for email, name, language, interests in chunk
        ]
        with transaction(engine) as session:
            session.connection().execute(insert(table), rows)
