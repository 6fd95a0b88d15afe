"""Which language a page is shown in, and the gettext functions its templates call.

The order: the switcher (``?lang=xx``, remembered in the session), then the subscriber's own
language on pages reached from a signed link, then the browser's Accept-Language, then the
configured default.
"""

from __future__ import annotations

from functools import lru_cache

from babel import Locale
from starlette.requests import Request

from bulletin.config import Settings


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
