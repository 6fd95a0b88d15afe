"""Test data for the sender's tests: fast settings, subscribers and an edition ready to send."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from bulletin.compose import placeholders
from bulletin.compose.approval import note_checked
from bulletin.compose.checks import content_hash
from bulletin.compose.render import render_fingerprint
from bulletin.compose.variants import variant_key
from bulletin.config import Settings, settings_from_dict
from bulletin.db import reading, transaction
from bulletin.models import Approval, Delivery, Edition, EditionStatus, EditionVariant, Subscriber, utcnow

from .factories import fast_settings_data, merge_sections, migrated_engine, subscriber_row
from .smtp_server import RecordingSMTPServer

LANGUAGES = ("fr", "en", "es")
DEFAULTS: dict[str, Any] = {
    "smtp": {"connections": 2, "timeout": 2.0},
    "delivery": {"give_up_after": 30.0, "bounce_after": 2, "batch_size": 10},
}


def fast_settings(
    tmp_path: Path,
    server: RecordingSMTPServer | None,
    *,
    database_url: str | None = None,
    smtp: dict[str, Any] | None = None,
    delivery: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The fast settings with two connections, short timeouts, batches of 10 and bounces after two."""
    sections = merge_sections(DEFAULTS, {"smtp": smtp or {}, "delivery": delivery or {}, **extra})
    return fast_settings_data(tmp_path, server, database_url=database_url, **sections)


def make_settings(tmp_path: Path, server: RecordingSMTPServer | None, **kwargs: Any) -> Settings:
    return settings_from_dict(fast_settings(tmp_path, server, **kwargs), tmp_path)


def add_subscribers(
    engine: Engine,
    count: int,
    *,
    start: int = 0,
    languages: tuple[str, ...] = LANGUAGES,
    interests: tuple[str, ...] = ("", "youth", "cities,youth"),
    domain: str = "example.net",
) -> list[str]:
    """Active, confirmed subscribers ``user<N>@domain`` spread over languages and interest sets."""
    combos = list(itertools.product(languages, interests))
    emails = []
    now = utcnow()
    with transaction(engine) as session:
        for n in range(start, start + count):
            language, keys = combos[n % len(combos)]
            email = f"user{n}@{domain}"
            emails.append(email)
            name = f"Reader {n}" if n % 4 else None
            session.add(subscriber_row(email, language, keys, name=name, confirmed=True, at=now))
    return emails


def sending_world(
    tmp_path: Path,
    server: RecordingSMTPServer | None,
    count: int,
    *,
    empty: tuple[tuple[str, str], ...] = (),
    **overrides: Any,
) -> tuple[Settings, Engine, int, list[str]]:
    """Fast settings, a migrated database, ``count`` subscribers and an edition being sent to them."""
    settings = make_settings(tmp_path, server, **overrides)
    engine = migrated_engine(settings)
    emails = add_subscribers(engine, count)
    return settings, engine, make_edition(engine, settings, empty=empty), emails


def frozen_edition(engine: Engine, settings: Settings, count: int) -> tuple[int, list[str]]:
    """``count`` subscribers and an edition whose recipient list is frozen; its id and the addresses."""
    emails = add_subscribers(engine, count)
    edition_id = make_edition(engine, settings)
    freeze(engine, settings, edition_id)
    return edition_id, emails


def freeze(engine: Engine, settings: Settings, edition_id: int) -> int:
    """Freeze the edition's recipient list into the ledger; return how many rows it made."""
    from bulletin.mta.sender import freeze_recipients

    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return freeze_recipients(session, settings, edition)


def ledger(engine: Engine, edition_id: int) -> dict[str, Delivery]:
    """The edition's delivery rows by recipient address."""
    with reading(engine) as session:
        rows = session.execute(
            select(Subscriber.email, Delivery).join(Subscriber).where(Delivery.edition_id == edition_id)
        ).all()
        return {email: delivery for email, delivery in rows}


# The slot marker of variants built without a database (tests of the message builder).
TEST_MARKER = "0123456789AB"


def slots(marker: str = TEST_MARKER) -> tuple[str, str, str]:
    """The name, unsubscribe and preferences slots of a marker."""
    return (
        placeholders.slot(marker, placeholders.NAME),
        placeholders.slot(marker, placeholders.UNSUBSCRIBE_URL),
        placeholders.slot(marker, placeholders.PREFERENCES_URL),
    )


def variant_body(language: str, interests: str, edition_id: int, marker: str = TEST_MARKER) -> tuple[str, str, str]:
    """Subject, HTML and text of a variant, with the per-recipient slots of ``marker``."""
    name_slot, unsubscribe_slot, preferences_slot = slots(marker)
    topics = interests or "all topics"
    subject = f"[{language}] Bulletin {edition_id} — {topics} · prévention"
    html = (
        f"<!doctype html><html lang='{language}'><body><p>Bonjour{name_slot},</p>"
        + "".join(
            f"<h2>Nouvelle {n} ({topics})</h2><p>Une initiative municipale réunit écoles, police et "
            f"associations ; résumé numéro {n} avec des accents: é à ü ñ. {'Texte long ' * 30}</p>\n"
            for n in range(8)
        )
        + f"<p>.Line starting with a dot</p>\n.\n"
        f'<p><a href="{unsubscribe_slot}">Se désabonner</a> · '
        f'<a href="{preferences_slot}">Préférences</a></p></body></html>'
    )
    text = (
        f"Bonjour{name_slot},\n\n"
        + "".join(f"* Nouvelle {n} ({topics}) : résumé é à ü ñ.\n" for n in range(8))
        + ".leading dot line\n\n"
        + f"Se désabonner : {unsubscribe_slot}\nPréférences : {preferences_slot}\n"
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

    now = utcnow()
    with transaction(engine) as session:
        edition = Edition(
            status=status,
            period_start=now,
            period_end=now,
            subjects={},
            intros={},
            render_fingerprint=render_fingerprint(settings),
            send_started_at=now if status is EditionStatus.SENDING else None,
        )
        session.add(edition)
        session.flush()
        hashes = {}
        for language, keys in itertools.product(languages, interests):
            marker = placeholders.edition_marker(session, edition.id)
            subject, html, text = variant_body(language, keys, edition.id, marker)
            digest = content_hash(subject, html, text)
            hashes[variant_key(language, keys)] = digest
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
        # Approved as stored, as approve() records it: a send compares hashes without rendering again.
        note_checked(session, edition)
        return edition.id


class FakeClock:
    """The sender's clock seam (bulletin.mta.clock.Clock) for tests: time moves only when someone waits.

    ``sleep`` and ``wait`` move time forward at once instead of waiting, so a retry due in five
    minutes is due after one call, and a rate limit is kept without the test taking any time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime.now(UTC)
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        with self._lock:
            return 1000.0 + self._elapsed

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += max(seconds, 0.0)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if not event.is_set():
            self.advance(seconds)
        return event.is_set()


BULLETIN = (sys.executable, "-m", "bulletin")


def run_workers(config: Path, count: int) -> list[tuple[str, str]]:
    """Run ``count`` real ``bulletin worker --once`` processes at once; return their (stdout, stderr)."""
    workers = [
        subprocess.Popen(
            [*BULLETIN, "--config", str(config), "worker", "--once", "--poll", "0.1", "--name", f"w{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for n in range(count)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    return outputs


def assert_each_received_once(server: RecordingSMTPServer, emails: list[str]) -> None:
    received = Counter(server.recipients())
    assert set(received) == set(emails)
    assert max(received.values()) == 1, [email for email, count in received.items() if count > 1]
