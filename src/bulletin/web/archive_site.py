"""The archive's pages written with the web templates: for the routes and for the static export.

Each page gets a :class:`~bulletin.compose.archive_urls.Links` that says where the other pages
are (paths on the server, or relative files in the export), so one template serves both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from bulletin.compose.archive import EditionEntry, IndexPage, ItemPage
from bulletin.compose.archive_urls import Links
from bulletin.config import Settings
from bulletin.i18n import PageText, page_text
from bulletin.web.language import language_name
from bulletin.web.pages import make_environment

STYLESHEET = "static/style.css"


def _switcher(settings: Settings, current: str, urls: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"code": code, "name": language_name(code), "url": urls[code], "current": code == current}
        for code in settings.languages
        if code in urls
    ]


def index_context(settings: Settings, index: IndexPage, links: Links) -> dict[str, Any]:
    urls = {code: links.index(code, index.page) for code in settings.languages}
    return {
        "index": index,
        "links": links,
        "noindex": settings.archive.noindex,
        "languages": _switcher(settings, index.language, urls),
    }


def edition_context(settings: Settings, entry: EditionEntry, links: Links) -> dict[str, Any]:
    urls = {code: links.edition(entry.edition_id, code) for code in settings.languages}
    return {
        "entry": entry,
        "links": links,
        "noindex": settings.archive.noindex,
        "languages": _switcher(settings, entry.language, urls),
    }


def item_context(settings: Settings, item: ItemPage, links: Links) -> dict[str, Any]:
    urls = {code: links.item(item_id) for code, item_id in item.versions}
    others = [
        {"code": code, "name": language_name(code), "url": links.item(item_id)}
        for code, item_id in item.versions
        if item_id != item.view.key
    ]
    return {
        "item": item,
        "links": links,
        "noindex": settings.archive.noindex,
        "languages": _switcher(settings, item.language, urls),
        "others": others,
        "editions": [
            {"url": links.edition(edition_id, item.language), "subject": subject}
            for edition_id, subject in item.editions
        ],
    }


class StaticPages:
    """The archive pages outside a request, for ``bulletin archive export``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env: jinja2.Environment = make_environment(settings.schedule.timezone)

    def _render(self, template: str, text: PageText, context: dict[str, Any]) -> str:
        values: dict[str, Any] = {
            "settings": self.settings,
            "organisation": self.settings.organisation,
            "language_name": language_name,
            "flashes": [],
            "staff": None,
            **text.template_functions(),
            **context,
        }
        return self.env.get_template(template).render(values)

    def index(self, page: IndexPage, links: Links) -> str:
        return self._render("archive/index.html", page_text(page.language), index_context(self.settings, page, links))

    def edition(self, entry: EditionEntry, links: Links) -> str:
        context = edition_context(self.settings, entry, links)
        return self._render("archive/edition.html", page_text(entry.language), context)

    def item(self, page: ItemPage, links: Links) -> str:
        return self._render("archive/item.html", page_text(page.language), item_context(self.settings, page, links))

    def stylesheet(self) -> bytes:
        return (Path(__file__).parent / STYLESHEET).read_bytes()
