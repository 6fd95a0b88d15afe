"""Rendering variants: languages and fallback, escaping, placeholders, checks, determinism, storage."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import lxml.html
import pytest
from sqlalchemy import Engine, select

from bulletin.app.editions import create_edition, get_edition
from bulletin.compose import placeholders
from bulletin.compose.render import (
    _MARKER_RE,
    EditionRenderer,
    InvalidInput,
    RenderedVariant,
    _environment,
    _topics_line,
    render_edition,
    render_fingerprint,
    render_variant,
    shipped_templates_dir,
)
from bulletin.compose.variants import plan_variants, subscriber_variant, variant_key
from bulletin.config import Settings, settings_from_dict
from bulletin.db import reading, transaction
from bulletin.models import Edition, EditionVariant

from .compose_fixtures import NOW, add_news, make_edition
from .factories import add_subscriber


def render(engine: Engine, settings: Settings, edition_id: int, language: str, interests: str = "") -> RenderedVariant:
    with reading(engine) as session:
        return render_variant(session, settings, get_edition(session, edition_id), language, interests)


def visible_text(html: str) -> str:
    return " ".join(lxml.html.document_fromstring(html).text_content().split())


def test_each_language_gets_its_version_and_missing_ones_marked_in_the_readers_language(
    engine: Engine, settings: Settings
) -> None:
    edition_id = make_edition(engine, settings)
    french = render(engine, settings, edition_id, "fr")
    english = render(engine, settings, edition_id, "en")
    spanish = render(engine, settings, edition_id, "es")

    assert 'lang="fr"' in french.html.split(">", 2)[1]
    text_fr = visible_text(french.html)
    assert "Les jeunes et la prévention" in text_fr
    assert "Young people and prevention" not in text_fr
    assert "Online fraud against older people" in text_fr
    assert "(en anglais)" in text_fr
    assert "Bonjour" in text_fr and "Se désabonner" in text_fr

    text_en = visible_text(english.html)
    assert "Young people and prevention" in text_en
    assert "Sécurité dans les quartiers (in French)" not in text_en  # the note follows the date, not the title
    assert "(in French)" in text_en
    assert "Unsubscribe" in text_en

    text_es = visible_text(spanish.html)
    assert "Los jóvenes y la prevención" in text_es
    assert "(en francés)" in text_es and "(en inglés)" in text_es
    assert "Darse de baja" in text_es and "Hola" in text_es
    # Dates are written by Babel in the reader's language.
    assert "19 mars 2025" in text_fr
    assert "March 19, 2025" in text_en
    assert "19 de marzo de 2025" in text_es
    # The fallback item keeps its own language for screen readers.
    root = lxml.html.document_fromstring(spanish.html)
    assert root.xpath("//div[@lang='en']//h2")[0].text_content().strip() == "Online fraud against older people"
    assert (french.item_count, english.item_count, spanish.item_count) == (3, 3, 3)
    assert "(en anglais)" in french.text and "(in French)" in english.text


def test_skip_fallback_leaves_out_stories_without_the_readers_language(engine: Engine, tmp_path: Path) -> None:
    settings = settings_from_dict(
        {"database": {"url": f"sqlite:///{tmp_path / 'subscribers.db'}"}, "compose": {"fallback": "skip"}}, tmp_path
    )
    edition_id = make_edition(engine, settings)
    spanish = render(engine, settings, edition_id, "es")
    assert spanish.item_count == 1
    assert "Online fraud" not in spanish.html and "(en" not in visible_text(spanish.html)
    # A Spanish reader of cybercrime only has nothing this time: the variant is empty, not sent.
    cyber = render(engine, settings, edition_id, "es", "cybercrime")
    assert cyber.empty and cyber.item_count == 0


def test_interests_pick_the_stories_on_any_of_them(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    youth = render(engine, settings, edition_id, "fr", "youth")
    both = render(engine, settings, edition_id, "fr", "cities,youth")
    assert youth.item_count == 1 and both.item_count == 2
    assert "Sécurité dans les quartiers" not in youth.html
    assert "Jeunesse" in visible_text(youth.html)  # the topics line names the reader's topics
    assert youth.preheader == "Les jeunes et la prévention"


def test_hostile_news_content_stays_literal_text(engine: Engine, settings: Settings) -> None:
    hostile_title = "{{ 7*7 }} {% if true %}yes{% endif %} <script>alert('x')</script> & co"
    with transaction(engine) as session:
        add_news(
            session,
            title=hostile_title,
            language="fr",
            summary="<img src=x onerror=alert(1)> {{ settings }}",
            link='https://www.example.org/fr/a?x=1&y="2"',
            image='https://www.example.org/i.png" onload="alert(1)',
            image_alt='"><script>alert(2)</script>',
            body=[
                {"type": "paragraph", "text": "<img src=x onerror=alert(1)> {{ settings }}"},
                {"type": "link", "url": "javascript:alert(3)", "label": "click {{ me }}"},
            ],
        )
        add_news(
            session,
            title="Sans lien",
            language="fr",
            body=[{"type": "link", "url": "javascript:alert(3)", "label": "click {{ me }}"}],
        )
        add_subscriber(session, "a@example.org", "fr")
        edition_id = create_edition(session, settings, since=NOW - timedelta(days=5), until=NOW).id
    variant = render(engine, settings, edition_id, "fr")

    root = lxml.html.document_fromstring(variant.html)
    assert not root.xpath("//script")
    assert not [e for e in root.iter() if any(name.startswith("on") for name in e.attrib)]
    titles = [h.text_content().strip() for h in root.xpath("//h2")]
    assert hostile_title in titles
    assert "49" not in titles[0] and "yes" not in titles[0].replace("{% if true %}yes", "")
    assert "<img src=x onerror=alert(1)> {{ settings }}" in visible_text(variant.html)
    assert all(not (a.get("href") or "").lower().startswith("javascript") for a in root.iter("a"))
    assert "click {{ me }}" in visible_text(variant.html)
    image = root.xpath("//img")[0]
    assert image.get("alt") == '"><script>alert(2)</script>'
    assert '"' not in image.get("src")
    assert hostile_title in variant.text and "<script>alert('x')</script>" in variant.text
    assert "&lt;" not in variant.text and "&amp;" not in variant.text


def test_placeholders_survive_the_pipeline_byte_exact(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    variant = render(engine, settings, edition_id, "fr", "youth")
    root = lxml.html.document_fromstring(variant.html)
    hrefs = [a.get("href") for a in root.iter("a")]
    name, unsubscribe, preferences = (placeholders.slot(variant.marker, key) for key in placeholders.ALL)
    assert unsubscribe in hrefs and preferences in hrefs
    assert f"Bonjour{name}," in variant.html
    assert f"Bonjour{name}," in variant.text
    assert f"Se désabonner: {unsubscribe}" in variant.text
    assert variant.problems == []


def test_variant_is_what_the_pipeline_gives_on_the_variant_alone(engine: Engine, settings: Settings) -> None:
    """Assembling variants from the language document must not change a byte."""
    edition_id = make_edition(engine, settings, intros={"fr": "Premier paragraphe.\n\nSecond paragraphe."})
    with reading(engine) as session:
        renderer = EditionRenderer(session, settings, get_edition(session, edition_id))
        for language, interests in [("fr", ""), ("fr", "cities,youth"), ("es", "youth"), ("en", "cybercrime")]:
            variant = renderer.render(language, interests)
            items = renderer.select(language, interests)
            alone = renderer.html_of(
                language,
                items,
                variant.preheader,
                _topics_line(settings, language, interests),
                renderer.web_version_url(language, interests),
            )
            assert _MARKER_RE.sub("", alone) == variant.html, (language, interests)


def test_rendering_is_deterministic(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    first = render(engine, settings, edition_id, "es", "youth")
    _environment.cache_clear()
    second = render(engine, settings, edition_id, "es", "youth")
    assert first.html == second.html and first.text == second.text
    assert first.content_hash == second.content_hash
    other = render(engine, settings, edition_id, "es", "")
    assert other.content_hash != first.content_hash


def test_text_part_is_wrapped_at_78_columns_without_breaking_links(engine: Engine, settings: Settings) -> None:
    long_url = "https://www.example.org/" + "very-long-path/" * 8
    # The whole item is shown, so its link block is in the text part.
    settings = dataclasses.replace(settings, compose=dataclasses.replace(settings.compose, excerpt_words=1000))
    with transaction(engine) as session:
        add_news(
            session,
            title="Un titre " * 15,
            language="fr",
            body=[
                {"type": "paragraph", "text": "Une phrase assez longue pour être coupée. " * 10},
                {"type": "list", "items": ["Un élément de liste qui dépasse largement la largeur " * 3]},
                {"type": "link", "url": long_url, "label": "Lien"},
            ],
        )
        add_subscriber(session, "a@example.org", "fr")
        edition_id = create_edition(session, settings, since=NOW - timedelta(days=5), until=NOW).id
    text = render(engine, settings, edition_id, "fr").text
    for line in text.splitlines():
        assert len(line) <= 78 or " " not in line.strip(), line
    assert long_url in text.splitlines()
    assert "  - Un élément de liste" in text


def test_size_budget_is_reported(engine: Engine, tmp_path: Path) -> None:
    settings = settings_from_dict(
        {"database": {"url": f"sqlite:///{tmp_path / 'subscribers.db'}"}, "compose": {"max_html_bytes": 20000}},
        tmp_path,
    )
    edition_id = make_edition(engine, settings)
    small = render(engine, settings, edition_id, "fr", "youth")
    large = render(engine, settings, edition_id, "fr")
    assert small.problems == []
    assert any("over the 20 KB budget" in problem for problem in large.problems), large.problems


def test_checks_report_relative_links_and_a_missing_unsubscribe_link(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    with transaction(engine) as session:
        add_news(session, title="Relatif", language="fr", body=[{"type": "link", "url": "/rapport", "label": "R"}])
        add_subscriber(session, "a@example.org", "fr")
        edition_id = create_edition(session, settings, since=NOW - timedelta(days=5), until=NOW).id
    assert "link is not absolute: '/rapport'" in render(engine, settings, edition_id, "fr").problems

    custom = tmp_path / "my-templates" / "email"
    custom.mkdir(parents=True)
    footer = (shipped_templates_dir() / "email" / "_footer.mjml.j2").read_text(encoding="utf-8")
    (custom / "_footer.mjml.j2").write_text(footer.replace('class="unsubscribe"', 'style="display:none"'))
    hidden = dataclasses.replace(
        settings, compose=dataclasses.replace(settings.compose, templates_dir=str(tmp_path / "my-templates"))
    )
    problems = render(engine, hidden, edition_id, "fr").problems
    assert "no visible unsubscribe link in the HTML part" in problems
    assert render_fingerprint(hidden) != render_fingerprint(settings)


def test_every_image_has_alt_text_and_absolute_address(engine: Engine, settings: Settings) -> None:
    with transaction(engine) as session:
        add_news(session, title="Photo sans texte", language="fr", image="https://www.example.org/p.jpg")
        add_subscriber(session, "a@example.org", "fr")
        edition_id = create_edition(session, settings, since=NOW - timedelta(days=5), until=NOW).id
    variant = render(engine, settings, edition_id, "fr")
    images = lxml.html.document_fromstring(variant.html).xpath("//img")
    assert images and all(image.get("alt") for image in images)
    assert images[0].get("alt") == "Photo sans texte"
    assert variant.problems == []


def test_plan_and_render_edition_store_every_variant_once(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    with transaction(engine) as session:
        edition = get_edition(session, edition_id)
        assert plan_variants(session, settings, edition) == [
            ("fr", ""),
            ("fr", "cities,youth"),
            ("en", ""),
            ("es", "youth"),
        ]
        rendered = render_edition(session, settings, edition)
        assert edition.render_fingerprint == render_fingerprint(settings)
    with transaction(engine) as session:
        rows = session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition_id)).all()
        assert sorted((r.language, r.interests) for r in rows) == sorted((v.language, v.interests) for v in rendered)
        assert {r.content_hash for r in rows} == {v.content_hash for v in rendered}
        # A subscriber leaves: the variant nobody needs any more is dropped on the next render.
        from bulletin.models import Subscriber, SubscriberStatus

        ana = session.scalar(select(Subscriber).where(Subscriber.email == "ana@example.org"))
        assert ana is not None
        ana.status = SubscriberStatus.UNSUBSCRIBED
    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        render_edition(session, settings, edition)
    with reading(engine) as session:
        keys = sorted(session.scalars(select(EditionVariant.language).where(EditionVariant.edition_id == edition_id)))
        assert keys == ["en", "fr", "fr"]


def test_unknown_languages_and_topics_are_refused(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    with pytest.raises(InvalidInput, match="'de' is not one of the configured languages"):
        render(engine, settings, edition_id, "de")
    with pytest.raises(InvalidInput, match="unknown topic 'sport'"):
        render(engine, settings, edition_id, "fr", "sport")


def test_subscriber_variant_normalises_unknown_language_and_topics(settings: Settings) -> None:
    assert subscriber_variant(settings, "de", "youth,gone,cities") == ("fr", "cities,youth")
    assert variant_key("fr", "cities,youth") == "fr|cities,youth"


def test_html_lang_preheader_and_contact_footer(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    variant = render(engine, settings, edition_id, "en", "")
    root = lxml.html.document_fromstring(variant.html)
    assert root.get("lang") == "en"
    assert variant.preheader.startswith("Online fraud against older people · Sécurité dans les quartiers")
    hidden = root.xpath("//body/div[contains(@style,'display:none')]")[0].text_content()
    assert variant.preheader in hidden
    assert settings.organisation.address in visible_text(variant.html)
    assert re.search(r"<!DOCTYPE html>", variant.html)
    assert variant.html_size == len(variant.html.encode("utf-8"))
