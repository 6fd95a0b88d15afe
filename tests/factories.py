"""Builders every test helper shares: subscriber and news rows, fast settings, migrated engines, config files."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, make_url
from sqlalchemy.orm import Session

from bulletin.compose.render import EditionRenderer, RenderedVariant
from bulletin.config import Settings
from bulletin.db import make_engine, normalise_url
from bulletin.migrate import upgrade
from bulletin.models import NewsItem, Subscriber, SubscriberStatus, utcnow

from .smtp_server import RecordingSMTPServer

_serials = itertools.count(1)


def next_serial() -> int:
    """A number no other row made by these builders has used (for unique sources, links and hashes)."""
    return next(_serials)


def subscriber_row(
    email: str,
    language: str = "fr",
    interests: str = "",
    *,
    name: str | None = None,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    confirmed: bool = False,
    at: datetime | None = None,
) -> Subscriber:
    """A subscriber who consented (and, with ``confirmed``, confirmed) at ``at``, now by default."""
    at = at or utcnow()
    return Subscriber(
        email=email,
        email_key=email.lower(),
        name=name,
        language=language,
        interests=interests,
        status=status,
        consent_source="test",
        consent_at=at,
        confirmed_at=at if confirmed else None,
    )


def add_subscriber(session: Session, email: str, language: str = "fr", interests: str = "", **fields: Any) -> int:
    """Insert a ``subscriber_row`` and return its id."""
    subscriber = subscriber_row(email, language, interests, **fields)
    session.add(subscriber)
    session.flush()
    return subscriber.id


def news_item_row(
    title: str,
    language: str,
    topics: str = "",
    *,
    published_at: datetime,
    key: str | None = None,
    link: str | None = None,
    summary: str = "",
    text: str | None = None,
    body: list[dict[str, Any]] | None = None,
    image: str | None = None,
    image_alt: str | None = None,
) -> NewsItem:
    """A news item from a test source; the body is one paragraph of ``text`` unless ``body`` is given."""
    serial = next_serial()
    return NewsItem(
        title=title,
        language=language,
        topics=topics,
        translation_key=key,
        link=link,
        summary=summary,
        body=body if body is not None else [{"type": "paragraph", "text": text or f"Text of {title}."}],
        image=image,
        image_alt=image_alt,
        published_at=published_at,
        source=f"test:{serial}",
        source_kind="test",
        source_id=f"item-{serial}",
        content_hash=f"hash-{serial}",
    )


def add_news_item(session: Session, title: str, language: str, topics: str = "", **fields: Any) -> NewsItem:
    """Insert a ``news_item_row`` and return it."""
    item = news_item_row(title, language, topics, **fields)
    session.add(item)
    session.flush()
    return item


def merge_sections(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Settings tables of ``base`` with the keys of the same tables in ``overrides`` laid over them."""
    merged = dict(base)
    for name, values in overrides.items():
        merged[name] = {**merged.get(name, {}), **values} if isinstance(values, dict) else values
    return merged


def fast_settings_data(
    tmp_path: Path, server: RecordingSMTPServer | None, *, database_url: str | None = None, **sections: Any
) -> dict[str, Any]:
    """Settings as a parsed TOML document: a real SMTP server (port 1 without one), no rate limit to speak
    of and retries in fractions of a second; ``sections`` add to or override single keys of each table."""
    data: dict[str, Any] = {
        "database": {"url": database_url or f"sqlite:///{tmp_path / 'subscribers.db'}"},
        "smtp": {
            "host": "127.0.0.1",
            "port": server.port if server else 1,
            "messages_per_second": 10000.0,
            "messages_per_hour": 10_000_000,
        },
        "delivery": {"retry_first": 0.05, "retry_max": 0.2},
    }
    return merge_sections(data, sections)


_TEMPLATE: list[Path] = []


def _migrated_template() -> Path:
    """A SQLite file with every migration applied, made once per test process and copied for each test."""
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="bulletin-template-"))
        path = folder / "migrated.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        # Closing the last connection folds the write-ahead log into the file: the file alone is the database.
        engine.dispose()
        assert not path.with_name(path.name + "-wal").exists()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def migrated_url_engine(url: str) -> Engine:
    """An engine on ``url`` with every migration applied.

    A new SQLite file is a copy of a template migrated once (about 10 ms instead of about half a
    second of migrations per test); an existing file or a PostgreSQL database is migrated.
    """
    parsed = make_url(normalise_url(url))
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:" and not Path(database).exists():
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_migrated_template(), database)
        return make_engine(url)
    engine = make_engine(url)
    upgrade(engine)
    return engine


def migrated_engine(settings: Settings) -> Engine:
    """An engine on the settings' database, with every migration applied."""
    return migrated_url_engine(settings.database_url)


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
    """Write settings (top-level scalars, then tables of scalars and lists) as a bulletin.toml."""
    lines = [f"{key} = {_toml(value)}" for key, value in data.items() if not isinstance(value, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {_toml(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` every tenth of a second; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.fixture(name="smtp_server", params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def smtp_server_both_ways(request: pytest.FixtureRequest) -> Iterator[RecordingSMTPServer]:
    """The recording server, with and without PIPELINING: both ways of talking are checked.

    A test module that imports this fixture runs each of its SMTP tests against both servers."""
    server = RecordingSMTPServer(pipelining=request.param)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class RenderWatch:
    """Counts variant renders and notes any made while a write transaction holds the SQLite database."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, database: Path) -> None:
        self.renders = 0
        self.inside_writes = 0
        real = EditionRenderer.render

        def render(renderer: EditionRenderer, language: str, interests: str) -> RenderedVariant:
            self.renders += 1
            # A second connection that cannot take the write lock at once means a writer holds it.
            probe = sqlite3.connect(database, timeout=0)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.rollback()
            except sqlite3.OperationalError:
                self.inside_writes += 1
            finally:
                probe.close()
            return real(renderer, language, interests)

        monkeypatch.setattr(EditionRenderer, "render", render)
