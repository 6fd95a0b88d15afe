"""Which language a page is shown in, and the gettext functions its templates call.

The order: the switcher (``?lang=xx``, remembered in the session), then the subscriber's own
language on pages reached from a signed link, then the browser's Accept-Language, then the
configured default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from babel import Locale
from markupsafe import Markup
from starlette.requests import Request

from bulletin.config import Settings

DOMAIN = "web"


def parse_accept_language(header: str) -> list[str]:
    """Primary language subtags from an Accept-Language header, best first (q=0 dropped)."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        if not tag:
            continue
        quality = 1.0
        for parameter in pieces[1:]:
            name, _, value = parameter.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, tag.split("-")[0]))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(request: Request, settings: Settings, subscriber_language: str | None = None) -> str:
    """The page language for this request; a ``?lang=`` choice is remembered in the session."""
    chosen = request.query_params.get("lang", "").strip().lower()
    if chosen in settings.languages:
        if request.session.get("lang") != chosen:
            request.session["lang"] = chosen
        return chosen
    remembered = request.session.get("lang") if "session" in request.scope else None
    if isinstance(remembered, str) and remembered in settings.languages:
        return remembered
    if subscriber_language in settings.languages:
        assert subscriber_language is not None
        return subscriber_language
    for tag in parse_accept_language(request.headers.get("accept-language", "")):
        if tag in settings.languages:
            return tag
    return settings.default_language


def N_(message: str) -> str:
    """Mark a message for the catalogs where it is translated later, from a variable."""
    return message


@lru_cache(maxsize=64)
def language_name(code: str) -> str:
    """The name of a language in that language, e.g. 'Español'."""
    try:
        name = Locale.parse(code).get_display_name(code) or code
    except (ValueError, LookupError):
        return code
    return name[:1].upper() + name[1:]


@dataclass(frozen=True)
class PageText:
    """The gettext functions of one language, for templates (HTML-safe) and for code (plain)."""

    language: str
    gettext: Callable[[str], str]
    ngettext: Callable[[str, str, int], str]

    def plain(self, message: str, **variables: Any) -> str:
        text = self.gettext(message)
        return text % variables if variables else text

    def nplain(self, singular: str, plural: str, count: int, **variables: Any) -> str:
        return self.ngettext(singular, plural, count) % {"count": count, **variables}

    def markup(self, message: str, **variables: Any) -> Markup:
        """Catalog text is trusted; the variables are escaped as they are put in."""
        text = Markup(self.gettext(message))
        return text % variables if variables else text

    def nmarkup(self, singular: str, plural: str, count: int, **variables: Any) -> Markup:
        text = Markup(self.ngettext(singular, plural, count))
        return text % {"count": count, **variables}

    def template_functions(self) -> Mapping[str, Any]:
        return {"_": self.markup, "ngettext": self.nmarkup, "page_language": self.language}

    def plain_functions(self) -> Mapping[str, Any]:
        """For text templates, which are not HTML-escaped."""
        return {"_": self.plain, "ngettext": self.nplain, "page_language": self.language}


def page_text(language: str) -> PageText:
    from bulletin.i18n import translations

    catalog = translations(language, DOMAIN)
    return PageText(language=language, gettext=catalog.gettext, ngettext=catalog.ngettext)
