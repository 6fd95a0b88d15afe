"""Dates written in news items, in French, English or Spanish, and ISO dates."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

MONTHS = {
    # French
    "janvier": 1, "janv": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3, "avril": 4, "avr": 4, "mai": 5,
    "juin": 6, "juillet": 7, "juil": 7, "aout": 8, "septembre": 9, "sept": 9, "octobre": 10, "oct": 10,
    "novembre": 11, "nov": 11, "decembre": 12, "dec": 12,
    # English
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4, "may": 5,
    "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9, "sep": 9,
    "october": 10, "november": 11, "december": 12,
    # Spanish
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7, "agosto": 8,
    "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
}  # fmt: skip

_WEEKDAY_NAMES = (
    "lundi mardi mercredi jeudi vendredi samedi dimanche "
    "monday tuesday wednesday thursday friday saturday sunday "
    "lunes martes miercoles jueves viernes sabado domingo"
)
WEEKDAYS = _WEEKDAY_NAMES.split()

# Words that may introduce a date line: "Publié le", "Published on", "Publicado el", "Date :".
PREFIXES = (
    "publie le",
    "publie",
    "mis a jour le",
    "date de publication",
    "date",
    "le",
    "published on",
    "published",
    "posted on",
    "posted",
    "updated on",
    "publicado el",
    "publicado",
    "actualizado el",
    "fecha de publicacion",
    "fecha",
    "el",
    "on",
)

_ISO = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(Z|[+-]\d{2}:?\d{2})?)?$")
_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2})(?:er|st|nd|rd|th|º|°)?\s+(?:de\s+)?([a-z]+)\.?\s+(?:de\s+|del\s+)?(\d{4})$")
_MONTH_DAY_YEAR = re.compile(r"^([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$")
_NUMERIC = re.compile(r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})$")


def _fold(text: str) -> str:
    if text.isascii():
        return text.casefold()
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text)).casefold()


_DIGIT = re.compile(r"\d")
# The blocks of combining marks (accents) of Latin, Greek and Cyrillic letters.
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


# What every date this module reads contains: an ISO or numeric date, or a month name.
_MAYBE_DATE = re.compile(r"\d{4}-\d|\d[/.]\d|(?<![a-z])(?:" + "|".join(sorted(MONTHS, key=len, reverse=True)) + ")")


def _strip_words(text: str) -> str:
    text = text.strip().strip(".").strip()
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            for sep in (" : ", ": ", " :", " "):
                if text.startswith(prefix + sep):
                    text = text[len(prefix) + len(sep) :].strip()
                    changed = True
        for weekday in WEEKDAYS:
            if text.startswith(weekday):
                rest = text[len(weekday) :].lstrip(" ,")
                if rest != text:
                    text = rest
                    changed = True
    return text


@lru_cache(maxsize=4096)
def parse_date_line(line: str, timezone: str = "UTC") -> datetime | None:
    """The moment a short date line names, or None if the line is not just a date.

    A date without a time is taken as midnight in ``timezone``.
    """
    if len(line) > 80 or not _DIGIT.search(line):
        # Every date this reads has a day number: a line without a digit is not one.
        return None
    text = _fold(" ".join(line.split()))
    if not _MAYBE_DATE.search(text):
        return None
    text = _strip_words(text)
    zone = ZoneInfo(timezone)
    if match := _ISO.match(text.upper()):
        year, month, day = int(match[1]), int(match[2]), int(match[3])
        try:
            if match[4] is None:
                return _midnight(date(year, month, day), zone)
            moment = datetime(year, month, day, int(match[4]), int(match[5]), int(match[6] or 0))
        except ValueError:
            return None
        offset = match[7]
        if offset is None:
            return moment.replace(tzinfo=zone).astimezone(UTC)
        return datetime.fromisoformat(f"{moment.isoformat()}{'+00:00' if offset == 'Z' else offset}").astimezone(UTC)
    day_text = month_text = year_text = ""
    if match := _DAY_MONTH_YEAR.match(text):
        day_text, month_text, year_text = match[1], match[2], match[3]
    elif match := _MONTH_DAY_YEAR.match(text):
        month_text, day_text, year_text = match[1], match[2], match[3]
    elif match := _NUMERIC.match(text):
        # Day first, as written in French and Spanish.
        try:
            return _midnight(date(int(match[3]), int(match[2]), int(match[1])), zone)
        except ValueError:
            return None
    month_number = MONTHS.get(month_text)
    if not month_number:
        return None
    try:
        return _midnight(date(int(year_text), month_number, int(day_text)), zone)
    except ValueError:
        return None


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)


def as_utc(value: datetime | date, timezone: str = "UTC") -> datetime:
    """An aware UTC datetime from a date or a (possibly naive, taken as local) datetime."""
    zone = ZoneInfo(timezone)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone)
        return value.astimezone(UTC)
    return _midnight(value, zone)
