"""The recipient list of a send: frozen once into the ledger, and listed by variant.

:func:`freeze_recipients` writes one ledger row per active subscriber in one ``INSERT ... SELECT``
when a send starts; :func:`recipients_by_variant` and :func:`iter_recipients` answer a dry run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.orm import Session

from bulletin.compose.variants import subscriber_variant, variant_subscriber_counts
from bulletin.config import Settings
from bulletin.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionVariant,
    Setting,
    Subscriber,
    SubscriberStatus,
)
from bulletin.models.base import UTCDateTime
from bulletin.mta.clock import SYSTEM_CLOCK, Clock

D = DeliveryState
NO_NEWS_REASON = "skipped: no news for this reader's language and topics in this edition"


def _frozen_key(edition_id: int) -> str:
    return f"send.frozen.{edition_id}"


def freeze_recipients(session: Session, settings: Settings, edition: Edition, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """Create the ledger rows of every active subscriber; return how many were added.

    Runs once per edition: the list is frozen in the caller's transaction together with a
    marker, and a later call (a resumed send) adds nobody. The rows are written by one
    ``INSERT ... SELECT`` joining the subscribers to a small temporary table that maps each
    (language, interests) found among them to its variant, so the list never passes through
    Python. A subscriber whose variant has no news is recorded as ``skipped``; one whose
    (language, interests) has no rendered variant cannot be recorded and is counted in
    :func:`freeze_summary`. Message-IDs are written when a row is handed over.
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
    groups = session.execute(
        select(Subscriber.language, Subscriber.interests, func.count())
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .group_by(Subscriber.language, Subscriber.interests)
    ).all()
    unmatched: dict[str, int] = {}
    mapping: list[dict[str, Any]] = []
    for language, interests, number in groups:
        # The composer's rule for which variant a subscriber reads.
        pair = subscriber_variant(settings, language, interests or "")
        variant = variants.get(pair)
        if variant is None:
            key = f"{pair[0]}|{pair[1]}"
            unmatched[key] = unmatched.get(key, 0) + int(number)
            continue
        variant_id, item_count = variant
        mapping.append(
            {
                "language": language,
                "interests": interests,
                "variant_id": variant_id,
                "state": (D.PENDING if item_count else D.SKIPPED).value,
                "last_reply": None if item_count else NO_NEWS_REASON,
            }
        )
    now = clock.now()
    count = select(func.count(Delivery.id)).where(Delivery.edition_id == edition.id)
    before = session.scalar(count) or 0
    if mapping:
        _insert_from_subscribers(session, edition.id, mapping, now)
    added = (session.scalar(count) or 0) - before
    session.add(
        Setting(
            key=_frozen_key(edition.id),
            value=json.dumps({"frozen_at": now.isoformat(), "added": added, "unmatched": unmatched}),
        )
    )
    session.flush()
    return added


def _insert_from_subscribers(session: Session, edition_id: int, mapping: list[dict[str, Any]], now: datetime) -> None:
    """One INSERT ... SELECT of every active subscriber found in ``mapping``, through a temporary table."""
    metadata = MetaData()
    variant_map = Table(
        f"freeze_map_{edition_id}",
        metadata,
        Column("language", String(8), primary_key=True),
        Column("interests", String(1000), primary_key=True),
        Column("variant_id", Integer),
        Column("state", String(16)),
        Column("last_reply", Text),
        prefixes=["TEMPORARY"],
    )
    connection = session.connection()
    variant_map.create(connection)
    try:
        connection.execute(insert(variant_map), mapping)
        subscribers = cast(Table, Subscriber.__table__)
        same_interests = subscribers.c.interests == variant_map.c.interests
        source = (
            select(
                literal(edition_id, Integer),
                subscribers.c.id,
                variant_map.c.variant_id,
                variant_map.c.state,
                variant_map.c.last_reply,
                literal(0, Integer),
                literal(0, Integer),
                literal("", String),
                literal(now, UTCDateTime()),
                literal(now, UTCDateTime()),
            )
            .select_from(
                subscribers.join(variant_map, and_(subscribers.c.language == variant_map.c.language, same_interests))
            )
            .where(subscribers.c.status == SubscriberStatus.ACTIVE)
            # Variant by variant (in subscriber order within each): the sender then needs the
            # message of only a few variants at a time, however many the edition has.
            .order_by(variant_map.c.variant_id, subscribers.c.id)
        )
        columns = [
            "edition_id",
            "subscriber_id",
            "variant_id",
            "state",
            "last_reply",
            "attempts",
            "uncertain",
            "message_id",
            "created_at",
            "updated_at",
        ]
        statement = _insert_ignoring_duplicates(session).from_select(columns, source)
        connection.execute(statement)
    finally:
        variant_map.drop(connection)


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
