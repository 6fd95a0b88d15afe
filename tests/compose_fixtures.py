"""Test data for the composer's tests: news items, subscribers and an edition, made with the models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bulletin.app.editions import create_edition
from bulletin.config import Settings
from bulletin.db import transaction
from bulletin.models import NewsItem, SubscriberStatus

from .factories import add_news_item, add_subscriber

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)


def add_news(session: Session, *, title: str, language: str, **fields: Any) -> NewsItem:
    """A news item published a day before ``NOW`` unless ``published_at`` says otherwise."""
    fields.setdefault("published_at", NOW - timedelta(days=1))
    return add_news_item(session, title, language, **fields)


def sample_news(session: Session) -> dict[str, NewsItem]:
    """Three stories: one in fr/en/es, one in French only, one in English only (with an image)."""
    youth = [
        ("fr", "Les jeunes et la prévention", "fr/jeunes", "Un programme pour les jeunes de Montréal."),
        ("en", "Young people and prevention", "en/youth", "A programme for young people in Montreal."),
        ("es", "Los jóvenes y la prevención", "es/jovenes", "Un programa para los jóvenes de Montreal."),
    ]
    items = {
        f"youth-{language}": add_news(
            session,
            title=title,
            language=language,
            topics="youth",
            key="story-youth",
            link=f"https://www.example.org/{path}",
            summary=summary,
            published_at=NOW - timedelta(days=3),
        )
        for language, title, path, summary in youth
    }
    items.update(
        {
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
    )
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
        add_subscriber(session, "gone@example.org", "fr", "drugs", status=SubscriberStatus.UNSUBSCRIBED)
        edition = create_edition(session, settings, since=NOW - timedelta(days=10), until=NOW, **kwargs)
        return edition.id
