"""The event date written in a news item's running text, in French, English or Spanish.

"Le 14 février,", "le 2 février dernier", "Mardi le 12 janvier,", "Les 20 et 21 janvier,",
"tenue le 8 décembre 2021", "El pasado 10 de febrero", "el jueves 5 de febrero", "On March 3,":
a day and a month, with or without weekday and year; a range ("du 12 au 14 mai") gives its first day.

A missing year is the latest one that puts the date on or before the page's own date (``as_of``),
unless the text says the date is to come ("prochain", "próximo", "next"): then it is the earliest
on or after. A weekday in the text must agree with the chosen date: without a year, the year is the
latest one (within a weekday cycle) where it does; with a year, a disagreeing date is not used.

dateparser's ``search_dates`` was tried first and read these sentences wrongly ("Les 20 et 21
janvier" as 20 January 2021, "Mardi le 12 janvier" on a Monday, "de 14 à 21 ans" as a date), and it
takes about 7 ms a sentence even with the languages given, so this module reads the few shapes
news items use with anchored patterns instead.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from bulletin.news.dates import MONTHS, WEEKDAYS

# Full month names and "sept": abbreviations such as "mar" or "dec" are also ordinary words.
_ABBREVIATIONS = {"janv", "fevr", "fev", "avr", "juil", "dec", "oct", "nov", "jan", "feb", "mar", "apr", "jun", "jul"}
_MONTH = "|".join(sorted((name for name in MONTHS if name not in _ABBREVIATIONS | {"aug", "sep"}), key=len)[::-1])
_WEEKDAY = "|".join(WEEKDAYS)
_DAY = r"(\d{1,2})(?!\d)(?:er|re|st|nd|rd|th|º|°)?"
_OTHER_DAY = r"\d{1,2}(?!\d)(?:er|re|st|nd|rd|th|º|°)?"
# "20 et 21", "12 au 14", "del 12 al 14", "18, 19 y 20", "3-5", "12 to 14".
_MORE_DAYS = rf"(?:\s*(?:,|-|–|au|al|a|to|et|y|and|&)\s*(?:le\s+|el\s+)?{_OTHER_DAY})*"
_YEAR = r"(?:,?\s+(?:de\s+|del\s+)?(\d{4}))?"

# Both start with what they look for (a digit, a capital), so the scan skips everything else; the
# character before a match is checked in code.
_DAY_FIRST = re.compile(rf"{_DAY}{_MORE_DAYS}\s+(?:de\s+|of\s+)?({_MONTH})(?![\w]){_YEAR}", re.IGNORECASE)
# Only English writes the month first, with a capital ("May 3"; "may 3" is a verb and a number).
_ENGLISH_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_MONTH_FIRST = re.compile(rf"({_ENGLISH_MONTHS})\s+{_DAY}(?![\w]){_MORE_DAYS}{_YEAR}")
_BEFORE_DAY = re.compile(r"[\w/.-]")
_WEEKDAY_BEFORE = re.compile(rf"(?<![\w])({_WEEKDAY})\s*,?\s*(?:(?:le|el|the|on)\s+)?$", re.IGNORECASE)
_FUTURE_BEFORE = re.compile(r"(?<![\w])(?:proximo|next)\s+$", re.IGNORECASE)
_FUTURE_AFTER = re.compile(r"^\s*(?:prochaine?|proximo)(?![\w])", re.IGNORECASE)

# Years tried backwards (or forwards) for a date without one: a weekday repeats within 11 years.
_YEARS_TRIED = 12


@dataclass(frozen=True)
class TextDate:
    """A date read in running text and the words it was read from."""

    day: date
    phrase: str


class _Unaccented(dict[int, str]):
    """``str.translate`` table from a character to its letter without accent, filled as met."""

    def __missing__(self, code: int) -> str:
        letter = unicodedata.normalize("NFKD", chr(code))[0]
        self[code] = letter
        return letter


_UNACCENTED = _Unaccented()


def _strip_accents(text: str) -> str:
    """The text without accents, one character for one, so match positions stay those of ``text``."""
    return text if text.isascii() else text.translate(_UNACCENTED)


def find_text_date(text: str, as_of: date) -> TextDate | None:
    """The first date the text names that can be placed in time relative to ``as_of``, or None."""
    plain = _strip_accents(text)
    # Both patterns' matches in the order they occur, read lazily: the first date is usually early.
    day_first = (
        (m.start(), 0, m, 1, 2, 3)
        for m in _DAY_FIRST.finditer(plain)
        if m.start() == 0 or not _BEFORE_DAY.match(plain[m.start() - 1])
    )
    month_first = (
        (m.start(), 1, m, 2, 1, 3)
        for m in _MONTH_FIRST.finditer(plain)
        if m.start() == 0 or not plain[m.start() - 1].isalnum()
    )
    for _start, _order, match, day_group, month_group, year_group in heapq.merge(
        day_first, month_first, key=lambda c: (c[0], c[1])
    ):
        found = _resolve(plain, match, day_group, month_group, year_group, as_of)
        if found is not None:
            return TextDate(found, _phrase(text, plain, match))
    return None


def _phrase(text: str, plain: str, match: re.Match[str]) -> str:
    start = match.start()
    weekday = _WEEKDAY_BEFORE.search(plain[max(0, start - 30) : start])
    if weekday:
        start = max(0, start - 30) + weekday.start()
    return " ".join(text[start : match.end()].split())


def _resolve(
    plain: str, match: re.Match[str], day_group: int, month_group: int, year_group: int, as_of: date
) -> date | None:
    day_number = int(match.group(day_group))
    month = MONTHS[match.group(month_group).casefold()]
    before = plain[max(0, match.start() - 30) : match.start()]
    after = plain[match.end() : match.end() + 20]
    weekday_match = _WEEKDAY_BEFORE.search(before)
    weekday = WEEKDAYS.index(weekday_match.group(1).casefold()) % 7 if weekday_match else None
    if weekday_match:
        before = before[: weekday_match.start()]
    if match.group(year_group):
        try:
            day = date(int(match.group(year_group)), month, day_number)
        except ValueError:
            return None
        return day if weekday is None or day.weekday() == weekday else None
    future = bool(_FUTURE_AFTER.match(after) or _FUTURE_BEFORE.search(before))
    step = 1 if future else -1
    for offset in range(_YEARS_TRIED):
        try:
            day = date(as_of.year + step * offset, month, day_number)
        except ValueError:
            # 29 February or 31 April: try the next year (a leap year may come).
            continue
        if (day < as_of if future else day > as_of) or (weekday is not None and day.weekday() != weekday):
            continue
        return day
    return None


def text_date_moment(found: TextDate, timezone: str) -> datetime:
    """Midnight of the found day in ``timezone``, in UTC (as every stored date is)."""
    return datetime.combine(found.day, time(0, 0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def local_day(moment: datetime, timezone: str) -> date:
    """The calendar day of ``moment`` in ``timezone``."""
    return moment.astimezone(ZoneInfo(timezone)).date()
