"""Test data for the sender's tests: fast settings, subscribers and an edition ready to send."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bulletin import placeholders
from bulletin.config import Settings, settings_from_dict
from bulletin.db import transaction
from bulletin.models import (
    Approval,
    Edition,
    EditionStatus,
    EditionVariant,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

from .smtp_server import RecordingSMTPServer

LANGUAGES = ("fr", "en", "es")


def fast_settings(
    tmp_path: Path,
    server: RecordingSMTPServer | None,
    *,
    database_url: str | None = None,
    smtp: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Settings as a TOML-like dict: a real SMTP server, retries scaled down to fractions of a second."""
    data: dict[str, Any] = {
        "database": {"url": database_url or f"sqlite:///{tmp_path / 'subscribers.db'}"},
        "smtp": {
            "host": "127.0.0.1",
            "port": server.port if server else 1,
            "connections": 2,
            "messages_per_second": 10000.0,
            "messages_per_hour": 10_000_000,
            "timeout": 2.0,
            **(smtp or {}),
        },
        "delivery": {
            "retry_first": 0.05,
            "retry_max": 0.2,
            "give_up_after": 30.0,
            "bounce_after": 2,
            "batch_size": 10,
            **(delivery or {}),
        },
        **extra,
    }
    return data


def make_settings(tmp_path: Path, server: RecordingSMTPServer | None, **kwargs: Any) -> Settings:
    return settings_from_dict(fast_settings(tmp_path, server, **kwargs), tmp_path)


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
    """Write settings (tables of scalars) as a bulletin.toml."""
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {_toml(v)}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def add_subscribers(
    engine: Engine,
    count: int,
    *,
    start: int = 0,
    languages: tuple[str, ...] = LANGUAGES,
    interests: tuple[str, ...] = ("", "youth", "cities,youth"),
    domain: str = "example.net",
) -> list[str]:
    """Active subscribers ``user<N>@domain`` spread over languages and interest sets."""
    combos = list(itertools.product(languages, interests))
    emails = []
    now = utcnow()
    with transaction(engine) as session:
        for n in range(start, start + count):
            language, keys = combos[n % len(combos)]
            email = f"user{n}@{domain}"
            emails.append(email)
            session.add(
                Subscriber(
                    email=email,
                    email_key=email,
                    name=f"Reader {n}" if n % 4 else None,
                    language=language,
                    interests=keys,
                    status=SubscriberStatus.ACTIVE,
                    consent_source="test",
                    consent_at=now,
                    confirmed_at=now,
                )
            )
    return emails


def variant_body(language: str, interests: str, edition_id: int) -> tuple[str, str, str]:
    """Subject, HTML and text of a variant, with the per-recipient placeholders."""
    topics = interests or "all topics"
    subject = f"[{language}] Bulletin {edition_id} — {topics} · prévention"
    html = (
        f"<!doctype html><html lang='{language}'><body><p>Bonjour{placeholders.NAME},</p>"
        + "".join(
            f"<h2>Nouvelle {n} ({topics})</h2><p>Une initiative municipale réunit écoles, police et "
            f"associations ; résumé numéro {n} avec des accents: é à ü ñ. {'Texte long ' * 30}</p>\n"
            for n in range(8)
        )
        + f"<p>.Line starting with a dot</p>\n.\n"
        f'<p><a href="{placeholders.UNSUBSCRIBE_URL}">Se désabonner</a> · '
        f'<a href="{placeholders.PREFERENCES_URL}">Préférences</a></p></body></html>'
    )
    text = (
        f"Bonjour{placeholders.NAME},\n\n"
        + "".join(f"* Nouvelle {n} ({topics}) : résumé é à ü ñ.\n" for n in range(8))
        + ".leading dot line\n\n"
        + f"Se désabonner : {placeholders.UNSUBSCRIBE_URL}\nPréférences : {placeholders.PREFERENCES_URL}\n"
    )
    return subject, html, text


def make_edition(
    engine: Engine,
    settings: Settings,
    *,
    status: EditionStatus = EditionStatus.SENDING,
    empty: tuple[tuple[str, str], ...] = (),
    languages: tuple[str, ...] = LANGUAGES,
    interests: tuple[str, ...] = ("", "youth", "cities,youth"),
) -> int:
    """An edition with a stored, approved variant per (language, interests), in ``status``.

    Variants named in ``empty`` have no news item (their readers are skipped).
    """
    from bulletin import compose

    now = utcnow()
    with transaction(engine) as session:
        edition = Edition(
            status=status,
            period_start=now,
            period_end=now,
            subjects={},
            intros={},
            render_fingerprint=compose.render_fingerprint(settings),
            send_started_at=now if status is EditionStatus.SENDING else None,
        )
        session.add(edition)
        session.flush()
        hashes = {}
        for language, keys in itertools.product(languages, interests):
            subject, html, text = variant_body(language, keys, edition.id)
            digest = compose.content_hash(subject, html, text)
            hashes[compose.variant_key(language, keys)] = digest
            session.add(
                EditionVariant(
                    edition_id=edition.id,
                    language=language,
                    interests=keys,
                    subject=subject,
                    preheader="",
                    html=html,
                    text=text,
                    content_hash=digest,
                    html_size=len(html.encode()),
                    item_count=0 if (language, keys) in empty else 8,
                    problems="",
                )
            )
        session.add(Approval(edition_id=edition.id, approver="tester", at=now, variant_hashes=hashes))
        return edition.id
