"""Test data for the composer's tests: news items, subscribers and an edition, made with the models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.db import transaction
from bulletin.editions import create_edition
from bulletin.models import NewsItem, Subscriber, SubscriberStatus, utcnow

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
_counter = iter(range(1, 1_000_000))


def add_news(
    session: Session,
    *,
    title: str,
    language: str,
    topics: str = "",
    key: str | None = None,
    link: str | None = None,
    summary: str = "",
    body: list[dict[str, Any]] | None = None,
    image: str | None = None,
    image_alt: str | None = None,
    published_at: datetime | None = None,
) -> NewsItem:
    number = next(_counter)
    item = NewsItem(
        title=title,
        language=language,
        topics=topics,
        translation_key=key,
        link=link,
        summary=summary,
        body=body if body is not None else [{"type": "paragraph", "text": f"Text of {title}."}],
        image=image,
        image_alt=image_alt,
        published_at=published_at or NOW - timedelta(days=1),
        source=f"test:{number}",
        source_kind="test",
        source_id=f"item-{number}",
        content_hash=f"hash-{number}",
    )
    session.add(item)
    session.flush()
    return item


def add_subscriber(session: Session, email: str, language: str, interests: str = "", *, active: bool = True) -> None:
    session.add(
        Subscriber(
            email=email,
            email_key=email.lower(),
            language=language,
            interests=interests,
            status=SubscriberStatus.ACTIVE if active else SubscriberStatus.UNSUBSCRIBED,
            consent_source="test",
            consent_at=utcnow(),
        )
    )
    session.flush()


def sample_news(session: Session) -> dict[str, NewsItem]:
    """Three stories: one in fr/en/es, one in French only, one in English only (with an image)."""
    items = {
        "youth-fr": add_news(
            session,
            title="Les jeunes et la prévention",
            language="fr",
            topics="youth",
            key="story-youth",
            link="https://www.example.org/fr/jeunes",
            summary="Un programme pour les jeunes de Montréal.",
            published_at=NOW - timedelta(days=3),
        ),
        "youth-en": add_news(
            session,
            title="Young people and prevention",
            language="en",
            topics="youth",
            key="story-youth",
            link="https://www.example.org/en/youth",
            summary="A programme for young people in Montreal.",
            published_at=NOW - timedelta(days=3),
        ),
        "youth-es": add_news(
            session,
            title="Los jóvenes y la prevención",
            language="es",
            topics="youth",
            key="story-youth",
            link="https://www.example.org/es/jovenes",
            summary="Un programa para los jóvenes de Montreal.",
            published_at=NOW - timedelta(days=3),
        ),
        "cities-fr": add_news(
            session,
            title="Sécurité dans les quartiers",
            language="fr",
            topics="cities",
            body=[
                {"type": "paragraph", "text": "Les villes partagent leurs pratiques."},
                {"type": "list", "items": ["Montréal", "Bogotá"]},
                {"type": "link", "url": "https://www.example.org/rapport.pdf", "label": "Le rapport"},
            ],
            published_at=NOW - timedelta(days=2),
        ),
        "cyber-en": add_news(
            session,
            title="Online fraud against older people",
            language="en",
            topics="cybercrime",
            link="https://www.example.org/en/fraud",
            summary="A study of online fraud.",
            image="https://www.example.org/images/fraud.jpg",
            image_alt="A laptop on a kitchen table",
            published_at=NOW - timedelta(days=1),
        ),
    }
    return items


def make_edition(engine: Engine, settings: Settings, **kwargs: Any) -> int:
    """Create the sample news, a few subscribers and an edition of them; return its id."""
    with transaction(engine) as session:
        sample_news(session)
        add_subscriber(session, "ana@example.org", "es", "youth")
        add_subscriber(session, "bob@example.org", "en", "")
        add_subscriber(session, "chloe@example.org", "fr", "cities,youth")
        add_subscriber(session, "dan@example.org", "fr", "")
        add_subscriber(session, "eve@example.org", "fr", "")
        add_subscriber(session, "gone@example.org", "fr", "drugs", active=False)
        edition = create_edition(session, settings, since=NOW - timedelta(days=10), until=NOW, **kwargs)
        return edition.id
