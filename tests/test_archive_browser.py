"""The archive in a real Chromium: pages served by uvicorn at phone and desktop width, the static export from disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
from click.testing import CliRunner

from bulletin.cli import cli

from . import test_web_browser as browser_tests
from .archive_support import send_archive_edition
from .factories import write_config
from .test_web_browser import Live, shoot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The fixtures of the other browser tests: Chromium, a page in it, the app served by uvicorn.
browser = browser_tests.browser
page = browser_tests.page
live = browser_tests.live


def test_archive_pages_at_phone_and_desktop_width(page: Any, live: Live) -> None:
    sent = send_archive_edition(live.engine, live.settings, live.smtp)
    page.goto(live.url + "/archive/?lang=fr")
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.locator("h1").inner_text() == "Bulletins précédents"
    shoot_both_widths(page, "archive-index")

    page.get_by_role("link", name=sent_subject(page)).first.click()
    page.wait_for_url(f"**/archive/{sent.edition_id}/fr")
    assert page.locator("section.story").count() == 3
    shoot_both_widths(page, "archive-edition")

    page.locator("section.story").nth(1).get_by_role("link", name="Lire la suite").click()
    page.wait_for_url(f"**/archive/items/{sent.items['ecole-fr']}")
    assert "en présence de chercheurs" in page.locator("article.item").inner_text()
    shoot_both_widths(page, "archive-item")
    page.get_by_role("link", name="English").last.click()
    page.wait_for_url(f"**/archive/items/{sent.items['ecole-en']}")
    assert page.locator("html").get_attribute("lang") == "en"

    # The link in the received email opens its web version; no script runs on any archive page.
    web_version = f"{live.url}/archive/{sent.edition_id}/en/email?topics=youth"
    page.goto(web_version)
    page.get_by_text("Pupils as mediators against bullying").filter(visible=True).first.wait_for(timeout=10_000)
    assert page.evaluate("document.scripts.length") == 0
    shoot(page, "archive-web-version")


def shoot_both_widths(tab: Any, name: str) -> None:
    """Screenshots at 375 and 1280 px (``shoot`` checks the phone width), and no sideways scroll at 1280 either."""
    shoot(tab, name)
    overflow = tab.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{name} scrolls sideways on a desktop"


def sent_subject(tab: Any) -> str:
    return str(tab.locator(".archive-entry h2 a").first.inner_text())


def test_static_export_opened_from_disk(browser: Any, live: Live, tmp_path: Path) -> None:
    sent = send_archive_edition(live.engine, live.settings, live.smtp)
    folder = tmp_path / "export"
    config = write_config(tmp_path / "cli.toml", {"database": {"url": live.settings.database.url}})
    result = CliRunner().invoke(cli, ["--config", str(config), "archive", "export", str(folder)])
    assert result.exit_code == 0, result.output

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    try:
        start = (folder / "index.html").as_uri()
        seen: set[str] = set()
        queue = [start]
        while queue:
            url = queue.pop()
            if url in seen:
                continue
            seen.add(url)
            if url.endswith(".atom"):
                # Chromium downloads feeds rather than showing them; the file is there.
                assert Path(unquote(urlsplit(url).path)).is_file(), url
                continue
            # A link to a missing file fails here (net::ERR_FILE_NOT_FOUND).
            tab.goto(url)
            assert tab.locator("h1").count() == 1, url
            # The style sheet loaded from disk: the page uses its fonts, not the browser's default serif.
            assert "system-ui" in tab.evaluate("getComputedStyle(document.body).fontFamily"), url
            links = tab.eval_on_selector_all("a[href], link[href]", "elements => elements.map(e => e.href)")
            for link in links:
                target = urldefrag(link).url
                if target.startswith("file://") and target.endswith((".html", ".atom")):
                    assert target.startswith(folder.as_uri()), f"{url} links outside the export: {link}"
                    queue.append(target)
        pages = {path.as_uri() for path in folder.rglob("*.html")}
        assert pages <= seen, f"pages no link reaches: {sorted(pages - seen)}"
        assert (folder / "items" / f"{sent.items['bref-en']}.html").as_uri() in seen
    finally:
        context.close()
