"""The public archive over HTTP (in process): pages of sent editions only, web versions, feeds, no personal data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import feedparser
import lxml.html  # type: ignore[import-untyped]
import pytest

from bulletin.compose.approval import approve
from bulletin.db import transaction
from bulletin.models import EditionStatus, utcnow
from bulletin.mta.sender import send_edition

from .archive_support import SUBSCRIBERS, SentEdition, send_archive_edition, set_status
from .factories import add_news_item
from .smtp_server import RecordingSMTPServer
from .web_support import WebEnv, make_edition, make_env

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, smtp_server: RecordingSMTPServer) -> Iterator[WebEnv]:
    env = make_env(tmp_path, smtp_server)
    yield env
    env.engine.dispose()


@pytest.fixture
def sent(env: WebEnv) -> SentEdition:
    return send_archive_edition(env.engine, env.settings, env.smtp)


def html_part(message: object) -> str:
    body = message.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    assert body is not None
    return str(body.get_content())


def text_part(message: object) -> str:
    body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    assert body is not None
    return str(body.get_content())


def links_of(html: str) -> dict[str, str]:
    """Visible link text -> href."""
    root = lxml.html.document_fromstring(html)
    return {" ".join(a.text_content().split()): a.get("href") for a in root.iter("a") if a.get("href")}


def assert_no_personal_data(body: str) -> None:
    for email, name, _language, _interests in SUBSCRIBERS:
        assert email not in body
        assert name not in body and name.split()[0] not in body
    for marker in ("/unsubscribe/", "/preferences/", "/confirm/", "__BULLETIN_"):
        assert marker not in body


def test_every_bulletin_links_to_its_own_web_version_and_the_archive(env: WebEnv, sent: SentEdition) -> None:
    french = sent.message_to("marie.curie@example.org")
    english = sent.message_to("john.smith@example.org")
    assert french["List-Archive"] == "<http://testserver/archive/>"
    links = links_of(html_part(french))
    fr_url = links["Voir ce bulletin dans votre navigateur"]
    assert fr_url == f"http://testserver/archive/{sent.edition_id}/fr/email"
    assert links["Bulletins précédents"] == "http://testserver/archive/"
    en_url = links_of(html_part(english))["View this bulletin in your browser"]
    assert en_url == f"http://testserver/archive/{sent.edition_id}/en/email?topics=youth"
    assert en_url in text_part(english)

    page = env.client.get(en_url)
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]
    # The English readers of youth news got the school story only, and so does their web version.
    assert "Pupils as mediators against bullying" in page.text
    assert "Neighbours watch over their district" not in page.text
    assert_no_personal_data(page.text)
    received = html_part(english)
    # The same rendering: the received email has the name where the web version has nothing.
    assert "Hello John Smith," in lxml.html.document_fromstring(received).text_content()
    assert "Hello," in lxml.html.document_fromstring(page.text).text_content()
    french_page = env.client.get(fr_url)
    assert french_page.status_code == 200 and "Des voisins veillent sur leur quartier" in french_page.text
    assert env.client.get(fr_url + "?topics=youth").status_code == 404  # no French reader chose only youth


def test_excerpts_with_read_more_to_the_link_else_the_item_page(env: WebEnv, sent: SentEdition) -> None:
    french = html_part(sent.message_to("marie.curie@example.org"))
    root = lxml.html.document_fromstring(french)
    read_more = [a.get("href") for a in root.iter("a") if a.text_content().startswith("Lire la suite")]
    item_page = f"http://testserver/archive/items/{sent.items['ecole-fr']}"
    # The long linked story goes to its own link, the long one without link to its archive page,
    # the short one has no "Read more".
    assert read_more == ["https://www.example.org/fr/quartiers", item_page]
    text = root.text_content()
    assert "Le rapport est paru." in text
    assert "écoles du secteur" not in text  # cut before the end of the long story
    assert "Dans le quartier de la gare" in text
    plain = text_part(sent.message_to("marie.curie@example.org"))
    assert f"Lire la suite: {item_page}" in plain
    # The item page has the whole text.
    page = env.client.get(item_page)
    assert page.status_code == 200
    assert "en présence de chercheurs et de parents d'élèves" in page.text.replace("&#39;", "'")


def test_archive_index_lists_sent_editions_in_the_visitors_language(env: WebEnv, sent: SentEdition) -> None:
    response = env.client.get("/archive/", headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert response.status_code == 200
    root = lxml.html.document_fromstring(response.text)
    assert root.get("lang") == "es"
    assert "Boletines anteriores" in root.findtext(".//h1")
    titles = [" ".join(a.text_content().split()) for a in root.cssselect(".story-titles a")]
    # Spanish readers get the Spanish story and the others in their original language.
    assert titles[0] == "Vecinos que cuidan su barrio"
    assert len(titles) == 3
    feed = root.cssselect('link[rel="alternate"][type="application/atom+xml"]')
    assert [link.get("href") for link in feed] == ["/archive/es.atom"]
    switcher = {a.get("hreflang"): a.get("href") for a in root.cssselect("nav.languages a")}
    assert switcher == {"fr": "/archive/?lang=fr", "en": "/archive/?lang=en", "es": "/archive/?lang=es"}
    english = env.client.get("/archive/?lang=en")
    assert "Neighbours watch over their district" in english.text
    # The choice is remembered, like on the subscription pages.
    assert lxml.html.document_fromstring(env.client.get("/archive/").text).get("lang") == "en"
    assert_no_personal_data(english.text)
    assert env.client.get("/archive").status_code == 308


def test_edition_and_item_pages(env: WebEnv, sent: SentEdition) -> None:
    page = env.client.get(f"/archive/{sent.edition_id}/en")
    assert page.status_code == 200
    root = lxml.html.document_fromstring(page.text)
    assert root.get("lang") == "en"
    stories = root.cssselect("section.story")
    assert [" ".join(s.findtext(".//h2/a").split()) for s in stories] == [
        "Neighbours watch over their district",
        "Pupils as mediators against bullying",
        "New report on cybercrime",
    ]
    assert [bool(s.cssselect(".read-more")) for s in stories] == [True, True, False]
    switcher = {a.get("hreflang"): a.get("href") for a in root.cssselect("nav.languages a")}
    assert switcher["fr"] == f"/archive/{sent.edition_id}/fr"
    assert_no_personal_data(page.text)

    item = env.client.get(f"/archive/items/{sent.items['quartiers-en']}")
    assert item.status_code == 200
    root = lxml.html.document_fromstring(item.text)
    assert root.get("lang") == "en"
    assert "publish its figures every quarter" in item.text  # the whole text
    assert root.cssselect(".topics")[0].text_content() == "Urban safety"
    assert root.cssselect(".meta")[0].text_content().strip()  # its date
    others = {a.get("hreflang"): a.get("href") for a in root.cssselect("section.versions a")}
    assert others == {
        "fr": f"/archive/items/{sent.items['quartiers-fr']}",
        "es": f"/archive/items/{sent.items['quartiers-es']}",
    }
    assert links_of(item.text)["Read it on the original site"] == "https://www.example.org/en/quartiers"
    published_in = root.cssselect("section.published-in a")
    assert [a.get("href") for a in published_in] == [f"/archive/{sent.edition_id}/en"]


def test_atom_feed_per_language_is_valid_with_stable_ids(env: WebEnv, sent: SentEdition) -> None:
    response = env.client.get("/archive/fr.atom")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(response.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.language == "fr"
    [entry] = parsed.entries
    assert entry.link == f"http://testserver/archive/{sent.edition_id}/fr"
    assert entry.id.startswith("tag:") and f"edition/{sent.edition_id}/fr" in entry.id
    assert entry.updated_parsed is not None and parsed.feed.updated_parsed is not None
    assert "Des voisins veillent sur leur quartier" in entry.content[0].value
    again = feedparser.parse(env.client.get("/archive/fr.atom").content)
    assert again.entries[0].id == entry.id and again.feed.id == parsed.feed.id
    assert feedparser.parse(env.client.get("/archive/en.atom").content).entries[0].id != entry.id
    assert env.client.get("/archive/de.atom").status_code == 404
    assert_no_personal_data(response.text)


def test_pages_carry_an_etag_and_answer_304(env: WebEnv, sent: SentEdition) -> None:
    for path in (
        "/archive/?lang=fr",
        f"/archive/{sent.edition_id}/fr",
        f"/archive/{sent.edition_id}/fr/email",
        f"/archive/items/{sent.items['bref-fr']}",
        "/archive/fr.atom",
    ):
        first = env.client.get(path)
        etag = first.headers["etag"]
        assert first.headers["cache-control"] == "no-cache"
        again = env.client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304, path
        assert again.content == b""
        assert env.client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    "status",
    [
        EditionStatus.DRAFT,
        EditionStatus.REVIEW,
        EditionStatus.APPROVED,
        EditionStatus.SCHEDULED,
        EditionStatus.PAUSED,
        EditionStatus.CANCELLED,
    ],
)
def test_editions_not_sent_are_not_found_at_every_archive_address(
    env: WebEnv, sent: SentEdition, status: EditionStatus
) -> None:
    paths = [
        f"/archive/{sent.edition_id}/fr",
        f"/archive/{sent.edition_id}/en",
        f"/archive/{sent.edition_id}/fr/email",
        f"/archive/{sent.edition_id}/en/email?topics=youth",
        f"/archive/items/{sent.items['quartiers-fr']}",
        f"/archive/items/{sent.items['ecole-en']}",
    ]
    for path in paths:
        assert env.client.get(path).status_code == 200, path
    set_status(env.engine, sent.edition_id, status)
    for path in paths:
        response = env.client.get(path, headers={"Accept-Language": "en"})
        assert response.status_code == 404, (status, path)
        assert "Page not found" in response.text
    index = env.client.get("/archive/?lang=fr")
    assert index.status_code == 200
    assert "Des voisins veillent sur leur quartier" not in index.text
    assert f"/archive/{sent.edition_id}/" not in index.text
    assert "<entry>" not in env.client.get("/archive/fr.atom").text


def test_unknown_addresses_are_not_found(env: WebEnv, sent: SentEdition) -> None:
    for path in (
        f"/archive/{sent.edition_id + 1}/fr",
        f"/archive/{sent.edition_id}/de",
        f"/archive/{sent.edition_id}/de/email",
        "/archive/items/999999",
        "/archive/?page=2",
        "/archive/?page=x",
        "/archive/?page=0",
    ):
        assert env.client.get(path).status_code == 404, path


def test_index_is_paginated_newest_first(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    env = make_env(tmp_path, smtp_server, archive={"per_page": 1})
    try:
        first = send_archive_edition(env.engine, env.settings, smtp_server)
        second = _second_edition(env)
        page_one = env.client.get("/archive/?lang=en")
        assert f"/archive/{second}/en" in page_one.text and f"/archive/{first.edition_id}/en" not in page_one.text
        root = lxml.html.document_fromstring(page_one.text)
        assert root.cssselect('a[rel="next"]')[0].get("href") == "/archive/?lang=en&page=2"
        page_two = env.client.get("/archive/?lang=en&page=2")
        assert f"/archive/{first.edition_id}/en" in page_two.text
        assert lxml.html.document_fromstring(page_two.text).cssselect('a[rel="prev"]')
        assert env.client.get("/archive/?lang=en&page=3").status_code == 404
    finally:
        env.engine.dispose()


def _second_edition(env: WebEnv) -> int:
    with transaction(env.engine) as session:
        add_news_item(session, "Une seconde édition", "fr", "cities", published_at=utcnow() - timedelta(hours=1))
        add_news_item(session, "A second edition", "en", "youth", published_at=utcnow() - timedelta(hours=1))
    edition_id = make_edition(env.engine, env.settings)
    approve(env.engine, env.settings, edition_id, "test-approver")
    assert send_edition(env.engine, env.settings, edition_id, actor="test", worker="archive-test").started
    return edition_id


def test_noindex_switch(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    env = make_env(tmp_path, smtp_server, archive={"noindex": True})
    try:
        sent = send_archive_edition(env.engine, env.settings, smtp_server)
        for path in ("/archive/", f"/archive/{sent.edition_id}/fr", f"/archive/{sent.edition_id}/fr/email"):
            response = env.client.get(path)
            assert response.headers["x-robots-tag"] == "noindex"
            assert re.search(r'<meta name="robots" content="noindex">', response.text), path
    finally:
        env.engine.dispose()
    assert "x-robots-tag" not in _plain_env_headers(tmp_path / "other", smtp_server)


def _plain_env_headers(tmp_path: Path, smtp_server: RecordingSMTPServer) -> dict[str, str]:
    tmp_path.mkdir()
    env = make_env(tmp_path, smtp_server)
    try:
        response = env.client.get("/archive/")
        assert '<meta name="robots"' not in response.text
        return dict(response.headers)
    finally:
        env.engine.dispose()


def test_archive_on_both_databases(tmp_path: Path, smtp_server: RecordingSMTPServer, database_url: str) -> None:
    env = make_env(tmp_path, smtp_server, database={"url": database_url})
    try:
        sent = send_archive_edition(env.engine, env.settings, smtp_server)
        paths = [
            "/archive/?lang=es",
            f"/archive/{sent.edition_id}/es",
            f"/archive/{sent.edition_id}/es/email",
            f"/archive/items/{sent.items['quartiers-es']}",
        ]
        for path in paths:
            assert env.client.get(path).status_code == 200, path
        assert "Vecinos que cuidan su barrio" in env.client.get("/archive/?lang=es").text
        assert len(feedparser.parse(env.client.get("/archive/es.atom").content).entries) == 1
        set_status(env.engine, sent.edition_id, EditionStatus.PAUSED)
        for path in paths[1:]:
            assert env.client.get(path).status_code == 404, path
        assert "Vecinos que cuidan su barrio" not in env.client.get("/archive/?lang=es").text
    finally:
        env.engine.dispose()
