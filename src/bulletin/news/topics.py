"""Topic tagging from the configured keywords of each interest: per language, accent- and
case-insensitive, whole words only."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from bulletin.config import Interest, Settings


def fold(text: str) -> str:
    """Lower case without accents: ``École`` -> ``ecole``."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


@lru_cache(maxsize=512)
def _pattern(keyword: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in fold(keyword).split()]
    # Whole words: not inside a longer word, and a phrase matches across any run of spaces.
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)")


def keyword_topics(settings: Settings, text: str, language: str) -> list[str]:
    """Interest keys whose keywords in ``language`` occur in ``text``."""
    folded = fold(text)
    found = []
    for interest in settings.interests:
        keywords = interest.keywords.get(language, [])
        if any(keyword.strip() and _pattern(keyword).search(folded) for keyword in keywords):
            found.append(interest.key)
    return sorted(found)


def _names(interest: Interest) -> set[str]:
    names = {fold(interest.key)}
    names.update(fold(label) for label in interest.labels.values())
    for keywords in interest.keywords.values():
        names.update(fold(keyword) for keyword in keywords)
    return names


def map_source_topics(settings: Settings, raw: list[str]) -> list[str]:
    """Interest keys named by a source's own topics or categories (key, label or keyword, any language).

    Categories that match no interest are ignored.
    """
    wanted = {" ".join(fold(value).replace("-", " ").replace("_", " ").split()) for value in raw if value.strip()}
    wanted |= {fold(value).strip() for value in raw if value.strip()}
    keys = [interest.key for interest in settings.interests if _names(interest) & wanted]
    return sorted(keys)


def topics_key(keys: list[str] | set[str]) -> str:
    """Sorted, de-duplicated, comma-joined keys: the stored form."""
    return ",".join(sorted({key for key in keys if key}))
