"""Topic tagging from the configured keywords of each interest: per language, accent- and
case-insensitive, whole words only.

An item is tagged by weighted evidence, not by any single hit: each keyword found in the title
counts ``TITLE_WEIGHT``; found in the text, its n-th occurrence counts 1/n (repeats count less);
a topic needs ``ingest.topic_min_score`` and at least ``RELATIVE_FLOOR`` of the best topic's score,
and only the ``ingest.max_topics`` strongest are kept. An item with no clear topic gets none.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from bulletin.config import Interest, Settings

# The blocks of combining marks (accents) of Latin, Greek and Cyrillic letters.
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def fold(text: str) -> str:
    """Lower case without accents: ``École`` -> ``ecole``."""
    if text.isascii():
        return text.casefold()
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text)).casefold()


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


TITLE_WEIGHT = 3.0
RELATIVE_FLOOR = 0.25


@dataclass(frozen=True)
class TopicEvidence:
    """How strongly an item's words point to one topic, and which keywords matched."""

    key: str
    score: float
    # (keyword, hits in the title, hits in the text)
    matches: tuple[tuple[str, int, int], ...]

    def describe(self) -> str:
        """``youth 5.5: jeunes (title, 2 in text), jeunesse (1 in text)``."""
        parts = []
        for keyword, in_title, in_text in self.matches:
            where = (["title"] if in_title else []) + ([f"{in_text} in text"] if in_text else [])
            parts.append(f"{keyword} ({', '.join(where)})")
        return f"{self.key} {self.score:g}: {', '.join(parts)}"


def topic_evidence(settings: Settings, title: str, text: str, language: str) -> list[TopicEvidence]:
    """The evidence for every topic with at least one keyword in ``title`` or ``text``, strongest first."""
    pattern, owners = _keyword_index(
        tuple((interest.key, tuple(interest.keywords.get(language, []))) for interest in settings.interests)
    )
    if pattern is None:
        return []
    in_title = Counter(" ".join(hit.split()) for hit in pattern.findall(fold(title)))
    in_text = Counter(" ".join(hit.split()) for hit in pattern.findall(fold(text)))
    # Only the keywords found are looked at: (topic key) -> [(keyword's rank, keyword, title, text hits)].
    found: dict[str, list[tuple[int, str, int, int]]] = {}
    for folded in in_title.keys() | in_text.keys():
        for key, rank, keyword in owners[folded]:
            found.setdefault(key, []).append((rank, keyword, in_title[folded], in_text[folded]))
    evidence = []
    for key, hits in found.items():
        score = sum((TITLE_WEIGHT if t else 0.0) + sum(1 / n for n in range(1, x + 1)) for _r, _k, t, x in hits)
        matches = tuple((keyword, t, x) for _rank, keyword, t, x in sorted(hits))
        evidence.append(TopicEvidence(key, round(score, 2), matches))
    return sorted(evidence, key=lambda e: (-e.score, e.key))


_Index = tuple[re.Pattern[str] | None, dict[str, list[tuple[str, int, str]]]]


@lru_cache(maxsize=64)
def _keyword_index(interests: tuple[tuple[str, tuple[str, ...]], ...]) -> _Index:
    """One pattern for the keywords of one language, so the text is read once (whole words, the
    longest keyword first where two overlap), and the (topic, rank, keyword) each folded keyword is."""
    owners: dict[str, list[tuple[str, int, str]]] = {}
    for key, raw in interests:
        for rank, keyword in enumerate(dict.fromkeys(k.strip() for k in raw if k.strip())):
            owners.setdefault(" ".join(fold(keyword).split()), []).append((key, rank, keyword))
    unique = sorted(owners, key=lambda k: (-len(k), k))
    if not unique:
        return None, owners
    alternatives = "|".join(r"\s+".join(re.escape(word) for word in keyword.split()) for keyword in unique)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)"), owners


def strongest_topics(settings: Settings, evidence: list[TopicEvidence]) -> list[str]:
    """Keys of the topics the evidence makes clear, at most ``ingest.max_topics``, sorted."""
    if not evidence:
        return []
    floor = max(settings.ingest.topic_min_score, evidence[0].score * RELATIVE_FLOOR)
    kept = [e.key for e in evidence if e.score >= floor][: settings.ingest.max_topics]
    return sorted(kept)


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
    if not raw:
        return []
    wanted = {" ".join(fold(value).replace("-", " ").replace("_", " ").split()) for value in raw if value.strip()}
    wanted |= {fold(value).strip() for value in raw if value.strip()}
    keys = [interest.key for interest in settings.interests if _names(interest) & wanted]
    return sorted(keys)


def topics_key(keys: list[str] | set[str]) -> str:
    """Sorted, de-duplicated, comma-joined keys: the stored form."""
    return ",".join(sorted({key for key in keys if key}))
