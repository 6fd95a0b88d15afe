"""Variants: which (language, interests) pairs an edition is rendered for, and their keys."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.models import Edition, EditionVariant, Subscriber, SubscriberStatus
from bulletin.news.topics import topics_key

TEXT_WIDTH = 78
LAYOUT = "email/layout.mjml.j2"
TEXT = "email/bulletin.txt.j2"
INLINE_CSS = "email/inline.css"
PREHEADER_LENGTH = 140


def variant_key(language: str, interests: str) -> str:
    """The key naming a variant across areas: ``"fr|cities,youth"``."""
    return f"{language}|{interests}"


def subscriber_variant(settings: Settings, language: str, interests: str) -> tuple[str, str]:
    """The variant a subscriber receives: unknown languages get the default, unknown topics are dropped."""
    if language not in settings.languages:
        language = settings.default_language
    known = set(settings.interest_keys)
    return language, topics_key({key for key in interests.split(",") if key in known})


def variant_subscriber_counts(session: Session, settings: Settings) -> dict[tuple[str, str], int]:
    """Active subscribers per variant."""
    counts: Counter[tuple[str, str]] = Counter()
    rows = session.execute(
        select(Subscriber.language, Subscriber.interests, func.count())
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .group_by(Subscriber.language, Subscriber.interests)
    )
    for language, interests, count in rows:
        counts[subscriber_variant(settings, language, interests or "")] += int(count)
    return dict(counts)


def plan_variants(session: Session, settings: Settings, edition: Edition) -> list[tuple[str, str]]:
    """The (language, interests) pairs of active subscribers, in a stable order."""
    rank = {lang: index for index, lang in enumerate(settings.languages)}
    pairs = variant_subscriber_counts(session, settings)
    return sorted(pairs, key=lambda pair: (rank[pair[0]], pair[1].count(",") + bool(pair[1]), pair[1]))


def stored_variants(session: Session, edition: Edition) -> dict[tuple[str, str], EditionVariant]:
    rows = session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition.id))
    return {(row.language, row.interests): row for row in rows}
