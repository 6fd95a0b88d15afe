"""The default period of a new edition: everything new since the previous edition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from bulletin.app.editions import create_edition
from bulletin.config import Settings
from bulletin.db import transaction
from bulletin.models import NewsItem, utcnow


def news(session_title: str, published_at: datetime, number: int) -> NewsItem:
    return NewsItem(
        title=session_title,
        language="fr",
        topics="",
        link=f"https://www.example.org/fr/story-{number}",
        summary="",
        body=[{"type": "paragraph", "text": f"Texte de l'article {number}."}],
        published_at=published_at,
        source=f"test:{number}",
        source_kind="test",
        source_id=f"period-{number}",
        content_hash=f"hash-{number}",
    )


def test_a_story_dated_before_the_previous_edition_but_ingested_after_it_is_not_lost(
    settings: Settings, engine: Engine
) -> None:
    now = utcnow()
    with transaction(engine) as session:
        session.add(news("Colloque sur la prévention", now - timedelta(days=2), 1))
        first = create_edition(session, settings)
        assert [item.news_item_id for item in first.items] == [1]
    # Ingested later, but dated this morning at midnight: before the first edition's period end.
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(hours=1)
    with transaction(engine) as session:
        session.add(news("Formation des intervenants", midnight, 2))
        session.add(news("Rapport annuel", utcnow(), 3))
    with transaction(engine) as session:
        second = create_edition(session, settings, until=utcnow() + timedelta(seconds=1))
        assert sorted(item.news_item_id for item in second.items) == [2, 3]
