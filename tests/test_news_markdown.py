"""Markdown files with front matter, and single HTML pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bulletin.news.errors import SourceError
from bulletin.news.html_pages import read_html_page
from bulletin.news.markdown import read_markdown

FIXTURES = Path(__file__).parent / "fixtures" / "news"


def test_front_matter_fields_and_body_blocks() -> None:
    draft = read_markdown((FIXTURES / "report_en.md").read_text(encoding="utf-8"), "report", timezone="UTC")

    assert draft.title == "International Report 2025: cities and crime prevention"
    assert draft.published_at == datetime(2025, 3, 10, tzinfo=UTC)
    assert draft.language == "en"
    assert draft.topics == ["cities", "research"]
    assert draft.link == "https://www.example.org/en/publications/international-report-2025"
    assert draft.translation_key == "international-report-2025"
    assert draft.summary == "Our international report reviews how cities around the world organise crime prevention."
    assert (draft.image, draft.image_alt) == (
        "https://www.example.org/media/report-2025.jpg",
        "Cover of the International Report 2025",
    )
    assert draft.body == [
        {
            "type": "paragraph",
            "text": "The eighth edition of our International Report looks at how cities organise crime prevention, "
            "from local safety audits to partnerships with health and social services.",
        },
        {"type": "heading", "text": "Key findings"},
        {
            "type": "list",
            "items": [
                "Two thirds of the cities studied have a local prevention strategy.",
                "Few of them evaluate their programmes.",
            ],
        },
        {"type": "paragraph", "text": "Download the full report."},
        {
            "type": "link",
            "url": "https://www.example.org/en/publications/international-report-2025.pdf",
            "label": "full report",
        },
    ]


def test_first_heading_is_the_title_when_front_matter_has_none() -> None:
    text = (
        "---\nlang: es\ntopics: juventud, escuela\n---\n"
        "# Taller sobre mediación escolar\n\nEl taller reúne a docentes.\n"
    )

    draft = read_markdown(text, "x")

    assert draft.title == "Taller sobre mediación escolar"
    assert draft.body == [{"type": "paragraph", "text": "El taller reúne a docentes."}]
    assert draft.topics == ["juventud", "escuela"]
    assert draft.problem is None


def test_missing_title_and_bad_front_matter_are_reported() -> None:
    assert "no title" in (read_markdown((FIXTURES / "no_title.md").read_text(), "x").problem or "")
    assert "is not a date" in (read_markdown("---\ntitle: T\ndate: soon\n---\nText.\n", "x").problem or "")
    with pytest.raises(SourceError, match="the front matter cannot be read"):
        read_markdown("---\ntitle: [unclosed\n---\nText.\n", "x")


def test_html_page_keeps_its_text_and_loses_its_scripts() -> None:
    html = """<!doctype html><html lang="fr-CA"><head><title>Site | Colloque</title>
    <meta property="og:title" content="Colloque sur la prévention">
    <meta name="description" content="Un colloque sur la prévention.">
    <link rel="canonical" href="https://www.example.org/fr/evenements/colloque">
    <script>alert(1)</script><style>body{}</style></head>
    <body onload="steal()"><h1>Colloque sur la prévention</h1>
    <p>Le colloque aura lieu <em>en juin</em>.<img src="x" onerror="alert(2)"></p>
    <iframe src="https://evil.example.com"></iframe></body></html>"""

    draft = read_html_page(html, "x")

    assert draft.title == "Colloque sur la prévention"
    assert draft.language == "fr-CA"
    assert draft.link == "https://www.example.org/fr/evenements/colloque"
    assert draft.summary == "Un colloque sur la prévention."
    assert draft.body == [{"type": "paragraph", "text": "Le colloque aura lieu en juin."}]
