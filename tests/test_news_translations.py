"""Versions of one story in several languages."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import Conflict
from bulletin.models import NewsItem
from bulletin.news.ingest import ingest_sources
from bulletin.news.translations import language_variants, link_translations, translations_of

FIXTURES = Path(__file__).parent / "fixtures" / "news"


def item_titled(engine: Engine, start: str) -> NewsItem:
    with reading(engine) as session:
        item = session.scalar(select(NewsItem).where(NewsItem.title.startswith(start)))
        assert item is not None, start
        return item


def translations(engine: Engine, item: NewsItem) -> list[tuple[str, str]]:
    with reading(engine) as session:
        return [(other.language, other.title) for other in translations_of(session, session.get(NewsItem, item.id))]


def test_language_variants_of_a_link() -> None:
    assert language_variants("https://x.org/fr/news/a", ["fr", "en", "es"]) == [
        "https://x.org/en/news/a",
        "https://x.org/es/news/a",
        "https://x.org/news/a",
    ]


def test_shared_key_and_language_segment_links_make_one_story(any_engine: Engine, any_settings: Settings) -> None:
    ingest_sources(
        any_engine,
        any_settings,
        [str(FIXTURES / name) for name in ("report_en.md", "informe_es.md", "feed_fr.rss", "listing_fr.txt")],
    )
    report = item_titled(any_engine, "International Report 2025")

    # English and Spanish share a translation key; the French feed entry's link differs only by /fr/.
    assert translations(any_engine, report) == [
        ("es", "Informe internacional 2025: las ciudades y la prevención del delito"),
        ("fr", "Rapport international 2025 : les villes et la prévention"),
    ]
    # The relation holds from every side.
    informe = item_titled(any_engine, "Informe internacional")
    assert [lang for lang, _ in translations(any_engine, informe)] == ["en", "fr"]
    # A story told in one language only has no translations.
    assert translations(any_engine, item_titled(any_engine, "Recrutement")) == []


def test_staff_link_joins_stories_and_refuses_two_items_in_one_language(
    any_engine: Engine, any_settings: Settings
) -> None:
    ingest_sources(any_engine, any_settings, [str(FIXTURES / "listing_fr.txt"), str(FIXTURES / "listing_es.txt")])
    bilan = item_titled(any_engine, "Bilan de l'année 2024")
    mision = item_titled(any_engine, "Misión de intercambio")
    forum = item_titled(any_engine, "Forum international")
    foro = item_titled(any_engine, "Foro internacional")
    assert (
        translations(any_engine, forum) == []
    )  # /fr/nouvelles/... and /es/noticias/... differ by more than the language

    with transaction(any_engine) as session:
        key = link_translations(session, [forum.id, foro.id])
    assert key == f"story-{min(forum.id, foro.id)}"
    assert translations(any_engine, forum) == [("es", foro.title)]

    with transaction(any_engine) as session, pytest.raises(Conflict, match="both in 'es'"):
        link_translations(session, [forum.id, mision.id])

    # The staff link survives a re-ingest of the sources.
    ingest_sources(any_engine, any_settings, [str(FIXTURES / "listing_fr.txt"), str(FIXTURES / "listing_es.txt")])
    assert translations(any_engine, foro) == [("fr", forum.title)]
    assert translations(any_engine, bilan) == []
