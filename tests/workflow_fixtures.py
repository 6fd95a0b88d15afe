"""Test data for the workflow and scheduler tests: settings, subscribers, news and a draft edition."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bulletin.config import Settings, settings_from_dict
from bulletin.db import make_engine, transaction
from bulletin.editions import create_edition
from bulletin.migrate import upgrade
from bulletin.models import Delivery, EditionTransition, NewsItem, Subscriber, SubscriberStatus, utcnow

from .smtp_server import RecordingSMTPServer

PERIOD_START = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 20, tzinfo=UTC)
_numbers = itertools.count(1)


def settings_data(
    tmp_path: Path, server: RecordingSMTPServer | None, *, database_url: str | None = None, **sections: Any
) -> dict[str, Any]:
    """Settings as a parsed TOML document: a real SMTP server and retries in fractions of a second."""
    data: dict[str, Any] = {
        "database": {"url": database_url or f"sqlite:///{tmp_path / 'subscribers.db'}"},
        "web": {"base_url": "https://news.example.org"},
        "smtp": {
            "host": "127.0.0.1",
            "port": server.port if server else 1,
            "messages_per_second": 10000.0,
            "messages_per_hour": 10_000_000,
            "timeout": 5.0,
        },
        "delivery": {"retry_first": 0.05, "retry_max": 0.2, "batch_size": 20},
        "schedule": {"timezone": "America/Toronto"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def make_settings(tmp_path: Path, server: RecordingSMTPServer | None, **kwargs: Any) -> Settings:
    return settings_from_dict(settings_data(tmp_path, server, **kwargs), tmp_path)


def migrated(settings: Settings) -> Engine:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return engine


def add_subscriber(session: Session, email: str, language: str, interests: str = "", name: str | None = None) -> int:
    subscriber = Subscriber(
        email=email,
        email_key=email.lower(),
        name=name,
        language=language,
        interests=interests,
        status=SubscriberStatus.ACTIVE,
        consent_source="test",
        consent_at=utcnow(),
    )
    session.add(subscriber)
    session.flush()
    return subscriber.id


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
    number = next(_numbers)
    item = NewsItem(
        title=title,
        language=language,
        topics=topics,
        translation_key=key,
        link=f"https://www.example.org/{language}/news-{number}",
        summary="",
        body=[{"type": "paragraph", "text": text or f"What happened: {title}."}],
        published_at=PERIOD_END - timedelta(days=days),
        source=f"test:{number}",
        source_kind="test",
        source_id=f"workflow-{number}",
        content_hash=f"hash-{number}",
    )
    session.add(item)
    session.flush()
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
            ids[email] = add_subscriber(session, email, language, interests, name)
        ids["youth-fr"] = add_news(session, "Les jeunes et la prévention", "fr", "youth", key="youth", days=5)
        ids["youth-en"] = add_news(session, "Young people and prevention", "en", "youth", key="youth", days=5)
        ids["youth-es"] = add_news(session, "Los jóvenes y la prevención", "es", "youth", key="youth", days=5)
        ids["cities-fr"] = add_news(session, "Sécurité dans les quartiers", "fr", "cities", key="cities", days=3)
        ids["cities-en"] = add_news(session, "Safer neighbourhoods", "en", "cities", key="cities", days=3)
        ids["cyber-en"] = add_news(session, "Online fraud against older people", "en", "cybercrime", days=1)
        edition = create_edition(session, settings, since=PERIOD_START, until=PERIOD_END, actor="test")
        ids["edition"] = edition.id
    return ids


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


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write settings made of tables of scalars and lists as a bulletin.toml."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
