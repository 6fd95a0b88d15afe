"""Staff corrections of news items: language, title and other fields, topics, exclusion.

A field set here is recorded in ``overrides`` so a later ingest of a changed source keeps it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.errors import Conflict, InvalidInput
from bulletin.models import NewsItem, NewsStatus
from bulletin.news.draft import single_line
from bulletin.news.store import content_hash, get_item
from bulletin.news.topics import topics_key

EDITABLE = ("title", "summary", "link", "image", "image_alt", "translation_key", "published_at")
LIMITS = {"title": 500, "summary": 2000, "link": 2000, "image": 2000, "image_alt": 500, "translation_key": 300}


def _touch(item: NewsItem) -> bool:
    """Refresh the content hash; an item whose content changed is flagged ``changed``."""
    new_hash = content_hash(item)
    if new_hash == item.content_hash:
        return False
    item.content_hash = new_hash
    item.changed = True
    return True


def _override(item: NewsItem, name: str) -> None:
    if name not in (item.overrides or []):
        item.overrides = sorted([*(item.overrides or []), name])


def set_item_fields(
    session: Session, settings: Settings, item_id: int, *, language: str | None = None, **values: Any
) -> tuple[NewsItem, bool]:
    """Set fields of an item by hand; return it and whether its content changed.

    ``values`` keys are among EDITABLE; an empty string clears an optional field.
    """
    item = get_item(session, item_id)
    if language is not None:
        if language not in settings.languages:
            raise InvalidInput(f"unknown language {language!r} (languages are {', '.join(settings.languages)})")
        item.language = language
        item.language_origin = "staff"
    for name, value in values.items():
        if name not in EDITABLE:
            raise InvalidInput(f"{name!r} cannot be set")
        if value is None:
            continue
        if name == "published_at":
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise InvalidInput("the date must be a timezone-aware datetime")
            item.published_at = value
            item.date_origin = "staff"
        else:
            text = single_line(str(value))
            if len(text) > LIMITS[name]:
                raise InvalidInput(f"{name} is longer than {LIMITS[name]} characters")
            if name == "title" and not text:
                raise InvalidInput("a news item needs a title")
            if name in ("link", "image") and text and not text.lower().startswith(("http://", "https://")):
                raise InvalidInput(f"{name} must be an http(s) URL, got {text!r}")
            setattr(item, name, text if (text or name in ("title", "summary")) else None)
        _override(item, name)
    changed = _touch(item)
    session.flush()
    return item, changed


def tag_item(session: Session, settings: Settings, item_id: int, changes: list[str]) -> NewsItem:
    """Add (``+key`` or ``key``) and remove (``-key``) topics; the item's topics are then staff-chosen."""
    item = get_item(session, item_id)
    if not changes:
        raise InvalidInput("give topics to add (+key) or remove (-key)")
    topics = set(item.topic_list)
    known = settings.interest_keys
    for change in changes:
        sign, key = (change[0], change[1:]) if change[:1] in "+-" else ("+", change)
        key = key.strip()
        if key not in known:
            raise InvalidInput(f"unknown topic {key!r} (topics are {', '.join(known)})")
        if sign == "+":
            topics.add(key)
        else:
            topics.discard(key)
    item.topics = topics_key(topics)
    item.topics_origin = "staff"
    _touch(item)
    session.flush()
    return item


def exclude_item(session: Session, item_id: int) -> NewsItem:
    """Keep the item out of future editions."""
    item = get_item(session, item_id)
    if item.status == NewsStatus.EXCLUDED:
        raise Conflict(f"news item {item_id} is already excluded")
    item.status = NewsStatus.EXCLUDED
    session.flush()
    return item


def include_item(session: Session, item_id: int) -> NewsItem:
    """Undo ``exclude``: the item may be selected again."""
    item = get_item(session, item_id)
    if item.status != NewsStatus.EXCLUDED:
        raise Conflict(f"news item {item_id} is not excluded")
    item.status = NewsStatus.NEW
    session.flush()
    return item
