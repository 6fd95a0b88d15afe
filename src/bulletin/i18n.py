"""Interface strings in each language: gettext catalogs read from the shipped ``.po`` files.

The catalogs live in ``bulletin/locale/<lang>/LC_MESSAGES/<domain>.po`` (domain ``bulletin`` for
emails, ``web`` for the web pages). Only the ``.po`` sources are kept: on first use Babel reads one
and compiles it in memory (a few milliseconds), so a fresh clone or an editable install works with
no ``compile`` step and there is no stale ``.mo`` to forget. Fuzzy entries are left out, like
``msgfmt`` does. A language or domain without a catalog gets :class:`gettext.NullTranslations`,
which returns the English source strings.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from markupsafe import Markup

LOCALE_DIR = Path(__file__).parent / "locale"
# The catalog domain of the web pages and the opt-in emails.
WEB_DOMAIN = "web"


def catalog_path(lang: str, domain: str = "bulletin") -> Path:
    """Where the ``.po`` catalog of a language and domain lives."""
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"


def translations(lang: str, domain: str = "bulletin") -> gettext.NullTranslations:
    """The translations of ``domain`` for ``lang`` (English source strings when there is none)."""
    path = catalog_path(lang, domain)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return gettext.NullTranslations()
    return _load(str(path), lang, mtime)


@lru_cache(maxsize=64)
def _load(path: str, lang: str, mtime: int) -> gettext.NullTranslations:
    # mtime is part of the cache key so an edited catalog is read again by a long-running process.
    with open(path, "rb") as po_file:
        catalog = read_po(po_file, locale=lang)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(fp=compiled)


def catalog_languages(domain: str = "bulletin") -> list[str]:
    """Languages that have a catalog for ``domain``."""
    if not LOCALE_DIR.is_dir():
        return []
    return sorted(p.name for p in LOCALE_DIR.iterdir() if (p / "LC_MESSAGES" / f"{domain}.po").is_file())


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


def format_local(moment: datetime, timezone: str, *, with_zone: bool = True) -> str:
    """A moment as readable local time in ``timezone``, with its zone abbreviation unless told not to."""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.strftime("%Y-%m-%d %H:%M %Z" if with_zone else "%Y-%m-%d %H:%M")


def page_text(language: str) -> PageText:
    """The web-page and opt-in email strings of one language."""
    catalog = translations(language, WEB_DOMAIN)
    return PageText(language=language, gettext=catalog.gettext, ngettext=catalog.ngettext)
