"""Versions of the same story in other languages.

Items are the same story when they share a translation key, when their links differ only by a
language path segment (``/fr/...`` and ``/en/...``), or when staff linked them (which gives them a
shared key, kept across re-ingests). The relation is followed transitively.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from bulletin.errors import Conflict, InvalidInput
from bulletin.models import NewsItem
from bulletin.news.store import content_hash, get_item

BASE_LANGUAGES = ("fr", "en", "es")
MAX_STORY_SIZE = 100


def language_variants(link: str, languages: list[str] | tuple[str, ...]) -> list[str]:
    """The same link with its language path segment replaced by each other language (or removed)."""
    parts = urlsplit(link)
    segments = parts.path.split("/")
    codes = {code.casefold() for code in languages}
    variants: list[str] = []
    for index, segment in enumerate(segments):
        if segment.casefold() not in codes:
            continue
        for code in sorted(codes - {segment.casefold()}):
            changed = [*segments[:index], code, *segments[index + 1 :]]
            variants.append(urlunsplit(parts._replace(path="/".join(changed))))
        removed = segments[:index] + segments[index + 1 :]
        variants.append(urlunsplit(parts._replace(path="/".join(removed) or "/")))
        break
    else:
        # A link without a language segment may be the default-language version of the others.
        if len(segments) > 1:
            for code in sorted(codes):
                added = [segments[0], code, *segments[1:]]
                variants.append(urlunsplit(parts._replace(path="/".join(added))))
    return [variant for variant in variants if variant != link]


def _known_languages(session: Session) -> list[str]:
    present = session.scalars(select(NewsItem.language).distinct()).all()
    return sorted(set(BASE_LANGUAGES) | {code for code in present if code})


def story_of(session: Session, item: NewsItem) -> list[NewsItem]:
    """Every item of the story ``item`` belongs to, itself included, by id."""
    languages = _known_languages(session)
    found: dict[int, NewsItem] = {item.id: item}
    frontier = [item]
    seen_keys: set[str] = set()
    while frontier and len(found) < MAX_STORY_SIZE:
        current = frontier.pop()
        related: list[NewsItem] = []
        if current.translation_key and current.translation_key not in seen_keys:
            seen_keys.add(current.translation_key)
            related += session.scalars(
                select(NewsItem).where(NewsItem.translation_key == current.translation_key)
            ).all()
        if current.link:
            variants = language_variants(current.link, languages)
            if variants:
                related += session.scalars(select(NewsItem).where(NewsItem.link.in_(variants))).all()
        for other in related:
            if other.id not in found:
                found[other.id] = other
                frontier.append(other)
    return sorted(found.values(), key=lambda other: other.id)


def translations_of(session: Session, item: NewsItem) -> list[NewsItem]:
    """The other-language versions of the same story, by language then id."""
    others = [other for other in story_of(session, item) if other.language != item.language]
    return sorted(others, key=lambda other: (other.language, other.id))


def link_translations(session: Session, item_ids: list[int]) -> str:
    """Make the items (and the stories they belong to) one story; return the shared translation key.

    Refused when the joined story would hold two items in the same language.
    """
    if len(set(item_ids)) < 2:
        raise InvalidInput("give at least two different news item ids to link")
    items = [get_item(session, item_id) for item_id in item_ids]
    story: dict[int, NewsItem] = {}
    for item in items:
        for member in story_of(session, item):
            story[member.id] = member
    by_language: dict[str, NewsItem] = {}
    for member in sorted(story.values(), key=lambda m: m.id):
        if member.language in by_language:
            first = by_language[member.language]
            raise Conflict(
                f"items {first.id} and {member.id} are both in {member.language!r}: a story has one item per "
                "language (correct one with 'bulletin news set ID --lang')"
            )
        by_language[member.language] = member
    key = next((item.translation_key for item in items if item.translation_key), None) or (f"story-{min(story)}")
    for member in story.values():
        if member.translation_key != key:
            member.translation_key = key
            member.content_hash = content_hash(member)
            member.changed = True
        if "translation_key" not in (member.overrides or []):
            member.overrides = [*(member.overrides or []), "translation_key"]
    session.flush()
    return key
