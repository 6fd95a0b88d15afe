"""Deterministic language detection for French, English and Spanish news.

Counting frequent function words gives the same answer for the same text on every run, which a
statistical detector seeded at random does not; staff correct a wrong guess with ``news set --lang``.
Languages outside these three fall back to langdetect with a fixed seed.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOP_WORDS: dict[str, frozenset[str]] = {
    "fr": _word_set(
        """le la les un une des du de au aux et est sont dans pour par sur avec ce cette ces qui que quoi
        dont où ou mais donc ne pas plus il elle ils elles nous vous leur leurs son sa ses notre nos votre
        vos être été avoir ont fait comme aussi entre sans sous lors chez afin ainsi très tout toute tous
        toutes d l qu n s c j m à été depuis après avant pendant selon été ils auprès vers"""
    ),
    "en": _word_set(
        """the an and of to in is are was were be been being for on with as by at from that this these
        those which who whom whose it its they them their our we you your he she his her not but or if
        than then there have has had will would can could should may might about into over after before
        during between through also more most such what when where how all any each both"""
    ),
    "es": _word_set(
        """el la los las un una unos unas y e o u de del al en es son fue fueron ser para por con sin sobre
        entre que quien cual cuyo como pero más muy también este esta estos estas ese esa esos esas su sus
        nuestro nuestra nuestros nuestras lo le les se no ya hay ha han desde hasta durante según tras
        cuando donde porque"""
    ),
}

# Letters that belong to one language much more than to the others.
MARKERS: dict[str, str] = {"es": "ñ¿¡", "fr": "çœæùûîêèëï"}

# Words, with an elided article or pronoun ("l'école"); the typographic apostrophe is made straight first.
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@dataclass(frozen=True)
class Guess:
    language: str | None
    confidence: float


def _words(text: str) -> list[str]:
    words: list[str] = []
    for word in _WORD.findall(text.casefold().replace("’", "'")):
        if "'" in word:
            # French elision: l'école -> l, école.
            head, _, tail = word.partition("'")
            words.extend((head, tail))
        else:
            words.append(word)
    return words


def detect_language(text: str, candidates: list[str]) -> Guess:
    """Guess which of ``candidates`` the text is written in; language None when it cannot tell."""
    supported = [lang for lang in candidates if lang in STOP_WORDS]
    others = [lang for lang in candidates if lang not in STOP_WORDS]
    text = unicodedata.normalize("NFC", text)
    words = _words(text)
    counts = Counter(words)
    scores: Counter[str] = Counter()
    for lang in supported:
        scores[lang] = sum(counts[word] for word in STOP_WORDS[lang].intersection(counts))
    lowered = text.casefold()
    for lang in supported:
        scores[lang] += 2 * sum(lowered.count(ch) for ch in MARKERS.get(lang, ""))
    ranked = sorted(supported, key=lambda lang: (-scores[lang], candidates.index(lang)))
    if ranked and scores[ranked[0]] >= 2:
        best = scores[ranked[0]]
        second = scores[ranked[1]] if len(ranked) > 1 else 0
        confidence = (best - second) / best
        if (confidence >= 0.2 or not others) and best > second:
            return Guess(ranked[0], round(confidence, 2))
    if others and words:
        return _langdetect_guess(text, candidates)
    return Guess(None, 0.0)


def _langdetect_guess(text: str, candidates: list[str]) -> Guess:
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    try:
        ranked = detect_langs(text)
    except LangDetectException:
        return Guess(None, 0.0)
    for guess in ranked:
        lang = str(guess.lang).split("-")[0]
        if lang in candidates:
            return Guess(lang, round(float(guess.prob), 2))
    return Guess(None, 0.0)


def normalise_language(value: str | None, languages: list[str]) -> str | None:
    """``fr-CA`` -> ``fr`` when ``fr`` is one of ``languages``; None otherwise."""
    if not value:
        return None
    code = value.strip().replace("_", "-").split("-")[0].casefold()
    return code if code in languages else None
