"""``news split`` and ``news merge``: staff fix a wrong split of a page; the correction is recorded
so every later ingest of the page replays it (see ``corrections``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.errors import Conflict, InvalidInput
from bulletin.models import EditionItem, NewsCorrection, NewsItem
from bulletin.news.corrections import merge_drafts, same_line, split_draft, split_key
from bulletin.news.draft import Draft, single_line
from bulletin.news.ingest import IngestOptions, file_time, settle_draft
from bulletin.news.store import ItemFields, get_item, upsert_item

# Origins of values that came from the page itself (or the person ingesting it), kept as they are.
_KEPT_LANGUAGE = ("source", "option", "staff")
_KEPT_DATE = ("metadata", "option", "feed", "staff")


def split_item(
    session: Session, settings: Settings, item_id: int, at: str, as_of: datetime | None = None
) -> tuple[NewsItem, NewsItem]:
    """Cut an item at its line ``at``: the line and what follows become a new item. Returns both.

    ``as_of`` is the page's date for dates without a year, as given to ingest (else the file's time).
    """
    item = _page_item(session, item_id)
    at = single_line(at)
    if not at:
        raise InvalidInput("give the title line to split at with --at")
    index = next((i for i, block in enumerate(item.body) if same_line(block, at)), None)
    if index is None:
        lines = [
            b["text"]
            for b in item.body
            if b["type"] == "heading" or (b["type"] == "paragraph" and len(b["text"]) < 150)
        ]
        hint = f"; its short lines are: {'; '.join(repr(line) for line in lines[:6])}" if lines else ""
        raise InvalidInput(f"news item {item.id} has no line {at!r}{hint}")
    if index == 0:
        raise InvalidInput(f"{at!r} is the first line of news item {item.id}: nothing would stay above it")
    if index == len(item.body) - 1:
        raise InvalidInput(f"{at!r} is the last line of news item {item.id}: the new item would have no text")
    new_key = split_key(item.source_id, at)
    taken = session.scalar(
        select(NewsItem.id).where(NewsItem.source_kind == item.source_kind, NewsItem.source_id == new_key)
    )
    if taken is not None:
        raise Conflict(f"news item {taken} was already cut from this page at {at!r}")
    parts = split_draft(_draft_of(item), at, new_key)
    assert parts is not None
    session.add(NewsCorrection(source=item.source, action="split", item_key=item.source_id, at=at))
    _, first = upsert_item(session, _settle(settings, item, parts[0], as_of))
    _, second = upsert_item(session, _settle(settings, item, parts[1], as_of))
    return first, second


def merge_items(
    session: Session, settings: Settings, first_id: int, second_id: int, as_of: datetime | None = None
) -> NewsItem:
    """Append the second item to the first (its title becomes a sub-heading) and delete it."""
    if first_id == second_id:
        raise InvalidInput("give two different news items to merge")
    first = _page_item(session, first_id)
    second = _page_item(session, second_id)
    if (first.source, first.source_kind) != (second.source, second.source_kind):
        raise InvalidInput(
            f"news items {first.id} and {second.id} come from different pages; only one page's items merge"
        )
    in_edition = session.scalar(select(EditionItem.edition_id).where(EditionItem.news_item_id == second.id).limit(1))
    if in_edition is not None:
        raise Conflict(f"news item {second.id} is in edition {in_edition}: remove it from the edition before merging")
    session.add(
        NewsCorrection(source=first.source, action="merge", item_key=first.source_id, other_key=second.source_id)
    )
    merged = merge_drafts(_draft_of(first), _draft_of(second))
    _, item = upsert_item(session, _settle(settings, first, merged, as_of))
    session.delete(second)
    session.flush()
    return item


def _page_item(session: Session, item_id: int) -> NewsItem:
    item = get_item(session, item_id)
    if item.source_kind != "text":
        raise InvalidInput(
            f"news item {item.id} comes from a {item.source_kind} source: only items of text pages are split or merged"
        )
    return item


def _draft_of(item: NewsItem) -> Draft:
    """The item as its page gave it, before language, date and topics were settled."""
    kept_date = item.date_origin in _KEPT_DATE
    return Draft(
        source_id=item.source_id,
        title=item.title,
        body=list(item.body),
        link=item.link,
        image=item.image,
        image_alt=item.image_alt,
        language=item.language if item.language_origin in _KEPT_LANGUAGE else None,
        published_at=item.published_at if kept_date else None,
        date_origin=item.date_origin if kept_date else "metadata",
        topics=item.topic_list if item.topics_origin == "source" else [],
        translation_key=item.translation_key,
    )


def _settle(settings: Settings, item: NewsItem, draft: Draft, as_of: datetime | None) -> ItemFields:
    options = IngestOptions(as_of=as_of)
    return settle_draft(settings, item.source, item.source_kind, draft, options, (_page_time(item), "mtime"))


def _page_time(item: NewsItem) -> datetime:
    """The page's date, as a re-ingest would take it: the file's time, else when the item was stored."""
    path = Path(item.source)
    try:
        return file_time(path)
    except OSError:
        return item.created_at
