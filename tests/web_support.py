"""Helpers shared by the web and staff tests: an app on a real SQLite file, subscribers, staff, editions."""

from __future__ import annotations

import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

with warnings.catch_warnings():
    # Starlette suggests another HTTP client package for its test client; httpx is the one installed.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from bulletin.app.staff import add_staff
from bulletin.config import Settings, settings_from_dict
from bulletin.db import reading, transaction
from bulletin.models import StaffRole, Subscriber, SubscriberStatus, utcnow
from bulletin.web import create_app

from .factories import add_news_item, add_subscriber, migrated_engine
from .smtp_server import RecordingSMTPServer

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class WebEnv:
    """Settings, a migrated database and an in-process client of the web app."""

    settings: Settings
    engine: Engine
    client: TestClient
    smtp: RecordingSMTPServer


def make_env(tmp_path: Path, recorder: RecordingSMTPServer, **extra: Any) -> WebEnv:
    settings = web_settings(tmp_path, smtp_port=recorder.port, **extra)
    engine = migrated_engine(settings)
    return WebEnv(settings, engine, client_for(settings, engine), recorder)


@pytest.fixture(name="web")
def web_env(tmp_path: Path, smtp_server: RecordingSMTPServer) -> Iterator[WebEnv]:
    """The web app on a fresh database, sending through the recording SMTP server."""
    env = make_env(tmp_path, smtp_server)
    yield env
    env.engine.dispose()


def web_settings(tmp_path: Path, *, base_url: str = "http://testserver", smtp_port: int = 25, **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"url": f"sqlite:///{tmp_path / 'web.db'}"},
        "web": {"base_url": base_url, **extra.pop("web", {})},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "timeout": 5.0},
        "organisation": {"list_name": "Prevention News"},
        **extra,
    }
    return settings_from_dict(data, tmp_path)


def client_for(settings: Settings, engine: Engine, address: str = "testclient") -> TestClient:
    """A client of a new app on this database, connecting from ``address``."""
    app = create_app(settings, engine)
    return TestClient(app, base_url=settings.web.base_url, follow_redirects=False, client=(address, 50000))


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def add_subscriber_row(
    engine: Engine,
    email: str,
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    language: str = "fr",
    interests: str = "",
    name: str | None = None,
) -> int:
    """A subscriber who consented, and confirmed if active."""
    with transaction(engine) as session:
        confirmed = status == SubscriberStatus.ACTIVE
        return add_subscriber(session, email, language, interests, name=name, status=status, confirmed=confirmed)


def subscriber_state(engine: Engine, email: str) -> Subscriber | None:
    with reading(engine) as session:
        from bulletin.app.subscribers import find_subscriber

        subscriber = find_subscriber(session, email)
        if subscriber is not None:
            session.expunge(subscriber)
        return subscriber


def add_staff_member(engine: Engine, name: str, role: StaffRole, *, email: str | None = None) -> None:
    with transaction(engine) as session:
        add_staff(session, name, role=role, password=PASSWORD, email=email)


def log_in(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/staff/login")
    return client.post(
        "/staff/login",
        data={"name": name, "password": password, "csrf_token": csrf_of(page.text), "next": "/staff/"},
    )


def staff_csrf(client: TestClient, path: str = "/staff/") -> str:
    return csrf_of(client.get(path).text)


def add_news(engine: Engine, *, days_ago: float = 1.0) -> list[int]:
    """Two stories in French and English and one in Spanish only, published recently."""
    published = utcnow() - timedelta(days=days_ago)
    stories = [
        ("quartiers", "fr", "Des quartiers plus sûrs grâce aux habitants", "cities", "Une ville mise sur ses voisins."),
        ("quartiers", "en", "Safer neighbourhoods thanks to residents", "cities", "A city relies on its neighbours."),
        ("ecoles", "fr", "Prévenir le harcèlement à l'école", "youth", "Un programme pour les élèves."),
        ("ecoles", "en", "Preventing bullying at school", "youth", "A programme for pupils."),
        ("informe", "es", "Nuevo informe sobre delitos en línea", "cybercrime", "Un estudio sobre internet."),
    ]
    ids = []
    with transaction(engine) as session:
        for index, (key, language, title, topics, text) in enumerate(stories):
            item = add_news_item(
                session,
                title,
                language,
                topics,
                key=key,
                link=f"https://www.example.org/{language}/{key}",
                summary=text,
                text=text,
                published_at=published - timedelta(minutes=index),
            )
            ids.append(item.id)
    return ids


def make_edition(engine: Engine, settings: Settings, *, render: bool = True, submit: bool = True) -> int:
    """A draft edition of the recent news, rendered and in review."""
    from bulletin.app import editions, workflow
    from bulletin.compose.render import render_edition

    with transaction(engine) as session:
        edition = editions.create_edition(
            session, settings, since=utcnow() - timedelta(days=30), until=utcnow(), actor="test"
        )
        if render:
            render_edition(session, settings, edition)
        if submit:
            workflow.submit(session, edition.id, "test")
        return edition.id


class ServerThread:
    """The web app served by uvicorn on a free loopback port, in a thread, for the browser tests."""

    def __init__(self, settings: Settings, engine: Engine, port: int) -> None:
        import uvicorn

        self.port = port
        config = uvicorn.Config(
            create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the web server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def received_links(server: RecordingSMTPServer, index: int = -1) -> list[str]:
    """The http(s) links in the text part of a received message."""
    message = server.messages[index].parse()
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return re.findall(r"https?://\S+", body.get_content())


def old_confirm_token(subscriber_id: int, email: str, nonce: str, *, age_seconds: int) -> str:
    """A confirmation token signed ``age_seconds`` ago, with the key the tests use."""
    import os

    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    from bulletin.app.links import email_digest

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    serializer = URLSafeTimedSerializer(os.environ["BULLETIN_SECRET_KEY"], salt="bulletin-confirm", signer=PastSigner)
    return str(serializer.dumps([subscriber_id, email_digest(email), nonce]))


def link_nonce(engine: Engine, subscriber_id: int) -> str:
    """The subscriber's current link nonce ("" when there is no such subscriber)."""
    with reading(engine) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        return subscriber.link_nonce if subscriber is not None else ""


def token_of(web: WebEnv, purpose: str, subscriber_id: int, email: str) -> str:
    from bulletin.app.links import make_token

    nonce = link_nonce(web.engine, subscriber_id)
    return make_token(web.settings.secret_key, purpose, subscriber_id, email, nonce)  # type: ignore[arg-type]


def tampered(token: str) -> str:
    """The token with one character of its payload changed."""
    index = 3
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]
