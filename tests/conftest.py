"""Shared fixtures: settings on a real SQLite file, an optional PostgreSQL database, an SMTP server."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from bulletin.config import Settings, settings_from_dict

from .factories import migrated_url_engine
from .smtp_server import RecordingSMTPServer

PG_ENV = "BULLETIN_TEST_DATABASE_URL"
SECRET = "test-secret-key-0123456789abcdef"
OPTIONAL_MARKERS = ("postgres", "browser", "imap", "spamassassin")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """In CI (BULLETIN_REQUIRE_OPTIONAL=1) a test of an optional part (PostgreSQL, Chromium, dovecot,
    SpamAssassin) may not skip: it fails."""
    report: pytest.TestReport = yield
    optional = any(any(item.iter_markers(name)) for name in OPTIONAL_MARKERS)
    if report.skipped and optional and os.environ.get("BULLETIN_REQUIRE_OPTIONAL") == "1":
        report.outcome = "failed"
        report.longrepr = f"CI provides {', '.join(OPTIONAL_MARKERS)}, yet this test skipped: {report.longrepr}"
    return report


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULLETIN_SECRET_KEY", SECRET)
    monkeypatch.delenv("BULLETIN_CONFIG", raising=False)


def _fresh_postgres_database() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://root@127.0.0.1:5432/test)")
    name = f"bulletin_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    yield from _fresh_postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL on a real SQLite file, then on PostgreSQL when available."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'subscribers.db'}"
    else:
        yield from _fresh_postgres_database()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with the database in a SQLite file under tmp_path."""
    return settings_from_dict({"database": {"url": f"sqlite:///{tmp_path / 'subscribers.db'}"}}, tmp_path)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """A migrated SQLite database for the ``settings`` fixture."""
    eng = migrated_url_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def any_settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings on SQLite and (when available) PostgreSQL: run store tests on both."""
    return dataclasses.replace(
        settings_from_dict({"database": {"url": database_url}}, tmp_path),
    )


@pytest.fixture
def any_engine(any_settings: Settings) -> Iterator[Engine]:
    eng = migrated_url_engine(any_settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def smtp_server() -> Iterator[RecordingSMTPServer]:
    """A real SMTP server on a free loopback port that records every message it accepts."""
    server = RecordingSMTPServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
