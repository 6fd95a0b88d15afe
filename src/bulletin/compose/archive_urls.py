"""Addresses of the public archive: on the web server, and as files of the static export.

The emails link to the web server's pages (view in browser, an item's page), the web pages link
to each other by path, and the static export links its files to each other relatively, so
the same templates serve the three through the :class:`Links` interface.
"""

from __future__ import annotations

import posixpath
from typing import Protocol
from urllib.parse import quote, urlencode

PREFIX = "/archive/"


class Links(Protocol):
    """Where each archive page is, as seen from the page being written."""

    def index(self, language: str, page: int = 1) -> str: ...

    def edition(self, edition_id: int, language: str) -> str: ...

    def item(self, item_id: int) -> str: ...

    def feed(self, language: str) -> str: ...

    def stylesheet(self) -> str: ...

    def subscribe(self, language: str) -> str: ...


class ServerLinks:
    """Paths on the web server; with ``base`` (web.base_url) they are absolute URLs."""

    def __init__(self, base: str = "") -> None:
        self.base = base.rstrip("/")

    def index(self, language: str, page: int = 1) -> str:
        query = {"lang": language, **({"page": str(page)} if page > 1 else {})}
        return f"{self.base}{PREFIX}?{urlencode(query)}"

    def edition(self, edition_id: int, language: str) -> str:
        return f"{self.base}{PREFIX}{edition_id}/{language}"

    def web_version(self, edition_id: int, language: str, interests: str) -> str:
        """The public copy of the email a variant's readers received."""
        url = f"{self.base}{PREFIX}{edition_id}/{language}/email"
        return url + ("?topics=" + quote(interests, safe=",") if interests else "")

    def item(self, item_id: int) -> str:
        return f"{self.base}{PREFIX}items/{item_id}"

    def feed(self, language: str) -> str:
        return f"{self.base}{PREFIX}{language}.atom"

    def stylesheet(self) -> str:
        return f"{self.base}/static/style.css"

    def subscribe(self, language: str) -> str:
        return f"{self.base}/subscribe?lang={language}"


def export_index_path(language: str, page: int = 1) -> str:
    return f"{language}/index.html" if page == 1 else f"{language}/page-{page}.html"


def export_edition_path(edition_id: int, language: str) -> str:
    return f"{edition_id}/{language}.html"


def export_item_path(item_id: int) -> str:
    return f"items/{item_id}.html"


def export_feed_path(language: str) -> str:
    return f"{language}.atom"


EXPORT_STYLESHEET = "style.css"


class ExportLinks:
    """Files of the static export, relative to the file ``current`` (or absolute with ``base``).

    The subscription form stays on the web server (``server_base``).
    """

    def __init__(self, current: str, server_base: str, base: str | None = None) -> None:
        self.current = current
        self.server_base = server_base.rstrip("/")
        self.base = base.rstrip("/") + "/" if base else None

    def _to(self, target: str) -> str:
        if self.base is not None:
            return self.base + target
        return posixpath.relpath(target, posixpath.dirname(self.current) or ".")

    def index(self, language: str, page: int = 1) -> str:
        return self._to(export_index_path(language, page))

    def edition(self, edition_id: int, language: str) -> str:
        return self._to(export_edition_path(edition_id, language))

    def item(self, item_id: int) -> str:
        return self._to(export_item_path(item_id))

    def feed(self, language: str) -> str:
        return self._to(export_feed_path(language))

    def stylesheet(self) -> str:
        return self._to(EXPORT_STYLESHEET)

    def subscribe(self, language: str) -> str:
        return f"{self.server_base}/subscribe?lang={language}"
