"""`bulletin archive export`: the archive as static files with relative links, updated in place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import lxml.html  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner, Result

from bulletin.cli import cli
from bulletin.models import EditionStatus

from .archive_support import SUBSCRIBERS, SentEdition, send_archive_edition, set_status
from .factories import write_config
from .smtp_server import RecordingSMTPServer
from .web_support import WebEnv, make_env

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, smtp_server: RecordingSMTPServer) -> Iterator[WebEnv]:
    env = make_env(tmp_path, smtp_server)
    yield env
    env.engine.dispose()


@pytest.fixture
def sent(env: WebEnv) -> SentEdition:
    return send_archive_edition(env.engine, env.settings, env.smtp)


def export(env: WebEnv, folder: Path, *args: str) -> Result:
    config = write_config(
        env.settings.base_dir / "cli.toml",
        {"database": {"url": env.settings.database.url}, "web": {"base_url": env.settings.web.base_url}},
    )
    return CliRunner().invoke(
        cli, ["--config", str(config), "archive", "export", str(folder), *args], catch_exceptions=False
    )


def internal_links(page: Path) -> list[str]:
    root = lxml.html.document_fromstring(page.read_text(encoding="utf-8"))
    links = [element.get("href") for element in root.iter("a", "link")] + [img.get("src") for img in root.iter("img")]
    return [link for link in links if link and not urlsplit(link).scheme and not link.startswith("#")]


def test_export_writes_every_page_with_relative_links(env: WebEnv, sent: SentEdition, tmp_path: Path) -> None:
    folder = tmp_path / "site" / "archive"
    result = export(env, folder)
    assert result.exit_code == 0, result.output
    edition = sent.edition_id
    expected = {
        "index.html",
        "style.css",
        *(f"{lang}/index.html" for lang in ("fr", "en", "es")),
        *(f"{edition}/{lang}.html" for lang in ("fr", "en", "es")),
        *(f"{lang}.atom" for lang in ("fr", "en", "es")),
        *(f"items/{item_id}.html" for item_id in sent.items.values()),
    }
    written = {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()}
    assert written - {".bulletin-archive.json"} == expected
    pages = [path for path in folder.rglob("*.html")]
    for page in pages:
        for link in internal_links(page):
            target = (page.parent / urlsplit(link).path).resolve()
            assert target.is_file(), f"{page.relative_to(folder)} links to missing {link}"
            assert target.is_relative_to(folder)
        text = page.read_text(encoding="utf-8")
        for email, name, _language, _interests in SUBSCRIBERS:
            assert email not in text and name not in text
        assert "/unsubscribe/" not in text and "/preferences/" not in text
    english = lxml.html.document_fromstring((folder / "en" / "index.html").read_text(encoding="utf-8"))
    assert english.get("lang") == "en"
    assert "Neighbours watch over their district" in english.text_content()
    # The subscription form stays on the web server.
    assert english.cssselect('nav.archive-nav a[href="http://testserver/subscribe?lang=en"]')
    item = (folder / "items" / f"{sent.items['ecole-fr']}.html").read_text(encoding="utf-8")
    assert "en présence de chercheurs" in item


def test_feeds_with_and_without_base_url(env: WebEnv, sent: SentEdition, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    assert export(env, folder).exit_code == 0
    relative = feedparser.parse((folder / "fr.atom").read_bytes())
    assert not relative.bozo
    assert relative.entries[0].link == f"{sent.edition_id}/fr.html"
    result = export(env, folder, "--base-url", "https://www.example.org/archive/")
    assert result.exit_code == 0, result.output
    absolute = feedparser.parse((folder / "fr.atom").read_bytes())
    assert not absolute.bozo
    assert absolute.entries[0].link == f"https://www.example.org/archive/{sent.edition_id}/fr.html"
    assert absolute.entries[0].id == relative.entries[0].id
    # Pages keep their relative links.
    assert "https://www.example.org/archive/" not in (folder / "fr" / "index.html").read_text(encoding="utf-8")


def test_running_again_updates_the_folder(env: WebEnv, sent: SentEdition, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    first = export(env, folder)
    assert first.exit_code == 0
    again = export(env, folder)
    assert again.exit_code == 0
    assert "0 files written" in again.output and "0 removed" in again.output
    # An edition no longer public disappears from the export at the next run.
    set_status(env.engine, sent.edition_id, EditionStatus.CANCELLED)
    after = export(env, folder)
    assert after.exit_code == 0, after.output
    assert not (folder / str(sent.edition_id)).joinpath("fr.html").exists()
    assert not (folder / "items" / f"{sent.items['bref-fr']}.html").exists()
    assert "Des voisins veillent" not in (folder / "fr" / "index.html").read_text(encoding="utf-8")
    assert (folder / "style.css").is_file()


def test_refuses_a_folder_it_did_not_write(env: WebEnv, sent: SentEdition, tmp_path: Path) -> None:
    folder = tmp_path / "website"
    folder.mkdir()
    (folder / "index.html").write_text("the centre's own home page", encoding="utf-8")
    result = export(env, folder)
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"Error: {folder} is not empty and was not written by 'bulletin archive export': choose a new or empty folder"
    ]
    assert (folder / "index.html").read_text(encoding="utf-8") == "the centre's own home page"
    assert sorted(path.name for path in folder.iterdir()) == ["index.html"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    assert export(env, a_file).exit_code != 0
    bad = export(env, tmp_path / "new", "--base-url", "www.example.org")
    assert bad.exit_code == 2 and "--base-url" in bad.output
    assert not (tmp_path / "new").exists()


def test_export_of_an_empty_archive(env: WebEnv, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    result = export(env, folder)
    assert result.exit_code == 0, result.output
    assert "Aucun bulletin n'a encore été envoyé." in (folder / "index.html").read_text(encoding="utf-8").replace(
        "&#39;", "'"
    )
    assert not feedparser.parse((folder / "en.atom").read_bytes()).bozo
