"""Test data for the workflow and scheduler tests: settings, subscribers, news and a draft edition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bulletin.app import workflow
from bulletin.app.editions import create_edition
from bulletin.compose.approval import approve, schedule
from bulletin.config import Settings, settings_from_dict
from bulletin.db import transaction
from bulletin.models import Delivery, EditionTransition

from .factories import add_news_item, add_subscriber, fast_settings_data, merge_sections, next_serial
from .smtp_server import RecordingSMTPServer

PERIOD_START = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 20, tzinfo=UTC)
DEFAULTS: dict[str, Any] = {
    "web": {"base_url": "https://news.example.org"},
    "smtp": {"timeout": 5.0},
    "delivery": {"batch_size": 20},
    "schedule": {"timezone": "America/Toronto"},
}


def settings_data(
    tmp_path: Path, server: RecordingSMTPServer | None, *, database_url: str | None = None, **sections: Any
) -> dict[str, Any]:
    """The fast settings with a public web address, batches of 20 and the Toronto time zone."""
    return fast_settings_data(tmp_path, server, database_url=database_url, **merge_sections(DEFAULTS, sections))


def make_settings(tmp_path: Path, server: RecordingSMTPServer | None, **kwargs: Any) -> Settings:
    return settings_from_dict(settings_data(tmp_path, server, **kwargs), tmp_path)


def add_news(
    session: Session,
    title: str,
    language: str,
    topics: str = "",
    *,
    key: str | None = None,
    days: int = 3,
    text: str | None = None,
) -> int:
    """A story with a link of its own, published ``days`` before the end of the period."""
    item = add_news_item(
        session,
        title,
        language,
        topics,
        key=key,
        link=f"https://www.example.org/{language}/news-{next_serial()}",
        text=text or f"What happened: {title}.",
        published_at=PERIOD_END - timedelta(days=days),
    )
    return item.id


SUBSCRIBERS = [
    ("ana@example.org", "es", "", "Ana Pérez"),
    ("marie@example.org", "fr", "", "Marie Côté & fils"),
    ("paul@example.org", "fr", "youth", None),
    ("john@example.org", "en", "", "John O'Brien"),
    ("lee@example.org", "en", "cities,youth", "Lee"),
]


def seed(engine: Engine, settings: Settings) -> dict[str, int]:
    """Five subscribers, three stories (one in three languages) and a draft edition; returns ids by name."""
    ids: dict[str, int] = {}
    with transaction(engine) as session:
        for email, language, interests, name in SUBSCRIBERS:
            ids[email] = add_subscriber(session, email, language, interests, name=name)
        ids["youth-fr"] = add_news(session, "Les jeunes et la prévention", "fr", "youth", key="youth", days=5)
        ids["youth-en"] = add_news(session, "Young people and prevention", "en", "youth", key="youth", days=5)
        ids["youth-es"] = add_news(session, "Los jóvenes y la prevención", "es", "youth", key="youth", days=5)
        ids["cities-fr"] = add_news(session, "Sécurité dans les quartiers", "fr", "cities", key="cities", days=3)
        ids["cities-en"] = add_news(session, "Safer neighbourhoods", "en", "cities", key="cities", days=3)
        ids["cyber-en"] = add_news(session, "Online fraud against older people", "en", "cybercrime", days=1)
        edition = create_edition(session, settings, since=PERIOD_START, until=PERIOD_END, actor="test")
        ids["edition"] = edition.id
    return ids


def schedule_approved(engine: Engine, settings: Settings, edition_id: int, when: datetime | str) -> None:
    """Submit the draft (marie), approve it (ana) and schedule it for ``when`` (ana)."""
    with transaction(engine) as session:
        workflow.submit(session, edition_id, "marie")
    approve(engine, settings, edition_id, "ana")
    with transaction(engine) as session:
        schedule(session, settings, edition_id, when, "ana")


def history(engine: Engine, edition_id: int) -> list[tuple[str, str, str]]:
    """(from, to, actor) of every logged transition."""
    with transaction(engine) as session:
        rows = session.scalars(
            select(EditionTransition).where(EditionTransition.edition_id == edition_id).order_by(EditionTransition.id)
        )
        return [(row.from_status, row.to_status, row.actor) for row in rows]


def delivery_states(engine: Engine, edition_id: int) -> dict[str, int]:
    with transaction(engine) as session:
        counts: dict[str, int] = {}
        for state in session.scalars(select(Delivery.state).where(Delivery.edition_id == edition_id)):
            counts[str(state)] = counts.get(str(state), 0) + 1
        return counts
