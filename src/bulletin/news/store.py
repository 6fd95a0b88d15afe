"""The news store: idempotent upsert of ingested items, and the queries staff and the composer use."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import insert, literal, select
from sqlalchemy.orm import Session

from bulletin.errors import NotFound
from bulletin.models import NewsItem, NewsStatus, utcnow
from bulletin.news.neutral import neutralise_data, neutralise_text, neutralise_url
from bulletin.news.topics import TopicEvidence

Outcome = Literal["added", "updated", "unchanged", "duplicate"]

# Fields a source provides and a re-ingest may update.
CONTENT_FIELDS = (
    "title",
    "body",
    "summary",
    "link",
    "image",
    "image_alt",
    "language",
    "published_at",
    "topics",
    "translation_key",
)
# Dates that only say when bulletin saw the item: a later ingest keeps the first one.
FALLBACK_DATE_ORIGINS = ("mtime", "fetched")


@dataclass
class ItemFields:
    """Everything ingest settled about one item, ready to store."""

    source: str
    source_kind: str
    source_id: str
    title: str
    body: list[dict[str, Any]]
    summary: str
    language: str
    language_origin: str
    published_at: datetime
    date_origin: str
    topics: str
    topics_origin: str
    link: str | None = None
    image: str | None = None
    image_alt: str | None = None
    translation_key: str | None = None
    notes: list[str] = field(default_factory=list)
    # Shown by a dry run, not stored: the words the date was read from, the keyword evidence.
    date_phrase: str | None = None
    evidence: list[TopicEvidence] = field(default_factory=list)


def _digest(values: dict[str, Any]) -> str:
    encoded = json.dumps(values, sort_keys=True, ensure_ascii=False, default=_encode, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def _encode(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _content_digest(values: dict[str, Any]) -> str:
    values = dict(values)
    published = values.get("published_at")
    values["published_at"] = published.isoformat() if isinstance(published, datetime) else None
    return _digest(values)


def content_hash(item: NewsItem) -> str:
    """Hash of what a reader would see of the item; it changes whenever the item does."""
    return _content_digest({name: getattr(item, name) for name in CONTENT_FIELDS})


def source_hash(fields: ItemFields) -> str:
    values = {name: getattr(fields, name) for name in CONTENT_FIELDS}
    values["origins"] = [fields.language_origin, fields.topics_origin]
    return _digest(values)


def neutralised(fields: ItemFields) -> ItemFields:
    """The fields with any placeholder word made inert (shown the same, never filled per recipient)."""
    return dataclasses.replace(
        fields,
        title=neutralise_text(fields.title),
        summary=neutralise_text(fields.summary),
        body=neutralise_data(fields.body),
        link=neutralise_url(fields.link) if fields.link else fields.link,
        image=neutralise_url(fields.image) if fields.image else fields.image,
        image_alt=neutralise_text(fields.image_alt) if fields.image_alt else fields.image_alt,
    )


def upsert_item(session: Session, fields: ItemFields) -> tuple[Outcome, NewsItem]:
    """Add the item, or update it in place when its source changed; unchanged sources change nothing.

    A changed item gets ``changed=True`` and a new ``content_hash``. Fields staff set by hand
    (language, topics, and those named in ``overrides``) are kept.
    """
    [result] = upsert_items(session, [fields])
    return result


def upsert_items(session: Session, batch: Sequence[ItemFields]) -> list[tuple[Outcome, NewsItem]]:
    """``upsert_item`` for many items of one source: the stored items are read in a few queries and
    the new ones inserted in one statement, so a page of thousands of items is stored in seconds.

    An item named twice in the batch (same source id, or same link and language) is stored once,
    as the batch first gives it.
    """
    batch = [neutralised(fields) for fields in batch]
    stored = _stored_by_source_id(session, batch)
    twins = _stored_by_link(
        session, [fields for fields in batch if (fields.source_kind, fields.source_id) not in stored]
    )
    # Outcomes, with the position of the new row for items inserted below.
    planned: list[tuple[Outcome, NewsItem | int]] = []
    rows: list[dict[str, Any]] = []
    pending: dict[tuple[str, str], int] = {}
    pending_links: dict[tuple[str, str], int] = {}
    with session.no_autoflush:
        for fields in batch:
            key = (fields.source_kind, fields.source_id)
            item = stored.get(key)
            if item is not None:
                planned.append((_update(item, fields), item))
                continue
            if key in pending:
                planned.append(("unchanged", pending[key]))
                continue
            link_key = (fields.link, fields.language) if fields.link else None
            twin = twins.get(link_key) if link_key else None
            if twin is not None:
                planned.append(("duplicate", twin))
                continue
            if link_key and link_key in pending_links:
                planned.append(("duplicate", pending_links[link_key]))
                continue
            pending[key] = len(rows)
            if link_key:
                pending_links[link_key] = len(rows)
            planned.append(("added", len(rows)))
            rows.append(_new_item(fields))
    session.flush()
    created: list[NewsItem] = []
    if rows:
        # One executemany, then the new rows read back by their source ids (RETURNING in the
        # parameters' order would cost SQLite one statement a row).
        session.execute(insert(NewsItem), rows)
        by_key = _stored_by_keys(session, [(row["source_kind"], row["source_id"]) for row in rows])
        created = [by_key[(row["source_kind"], row["source_id"])] for row in rows]
    return [(outcome, created[item] if isinstance(item, int) else item) for outcome, item in planned]


def stored_ids(session: Session, batch: Sequence[ItemFields]) -> list[int | None]:
    """The id of the stored item each of ``batch`` would update, None for a new one (for dry runs)."""
    stored = _stored_by_source_id(session, batch)
    return [stored[key].id if (key := (f.source_kind, f.source_id)) in stored else None for f in batch]


def _stored_by_source_id(session: Session, batch: Sequence[ItemFields]) -> dict[tuple[str, str], NewsItem]:
    return _stored_by_keys(session, [(fields.source_kind, fields.source_id) for fields in batch])


def _stored_by_keys(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], NewsItem]:
    """Stored items by (source kind, source id)."""
    found: dict[tuple[str, str], NewsItem] = {}
    for kind in {kind for kind, _id in keys}:
        ids = sorted({source_id for item_kind, source_id in keys if item_kind == kind})
        for chunk in _chunks(ids):
            rows = session.scalars(select(NewsItem).where(NewsItem.source_kind == kind, NewsItem.source_id.in_(chunk)))
            found.update(((item.source_kind, item.source_id), item) for item in rows)
    return found


def _stored_by_link(session: Session, batch: Sequence[ItemFields]) -> dict[tuple[str | None, str], NewsItem]:
    """The first stored item (lowest id) of each (link, language) the batch names."""
    found: dict[tuple[str | None, str], NewsItem] = {}
    links = sorted({fields.link for fields in batch if fields.link})
    for chunk in _chunks(links):
        rows = session.scalars(select(NewsItem).where(NewsItem.link.in_(chunk)).order_by(NewsItem.id))
        for item in rows:
            found.setdefault((item.link, item.language), item)
    return found


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _new_item(fields: ItemFields) -> dict[str, Any]:
    """The row of a new item."""
    content = {name: getattr(fields, name) for name in CONTENT_FIELDS}
    now = utcnow()
    return {
        **content,
        "source": fields.source,
        "source_kind": fields.source_kind,
        "source_id": fields.source_id,
        "language_origin": fields.language_origin,
        "date_origin": fields.date_origin,
        "topics_origin": fields.topics_origin,
        "source_hash": source_hash(fields),
        "content_hash": _content_digest(content),
        "overrides": [],
        "status": NewsStatus.NEW,
        "changed": False,
        "created_at": now,
        "updated_at": now,
    }


def _update(item: NewsItem, fields: ItemFields) -> Outcome:
    new_source_hash = source_hash(fields)
    if item.source_hash == new_source_hash:
        return "unchanged"
    merged = _merged_values(item, fields)
    new_hash = _content_digest({name: merged[name] for name in CONTENT_FIELDS})
    if new_hash == item.content_hash:
        # The source changed in ways that do not show (a touched file, a field staff set by hand):
        # nothing is written, so the item does not look changed to the workflow.
        return "unchanged"
    for name, value in merged.items():
        if getattr(item, name) != value:
            setattr(item, name, value)
    item.source = fields.source
    item.source_hash = new_source_hash
    item.content_hash = new_hash
    item.changed = True
    return "updated"


def _merged_values(item: NewsItem, fields: ItemFields) -> dict[str, Any]:
    """The item's fields after a re-ingest: the source's, except what staff set and first-seen dates."""
    kept = set(item.overrides or [])
    if item.language_origin == "staff":
        kept.add("language")
    if item.topics_origin == "staff":
        kept.add("topics")
    if fields.date_origin in FALLBACK_DATE_ORIGINS and item.published_at is not None:
        kept.add("published_at")
    merged = {name: getattr(item if name in kept else fields, name) for name in CONTENT_FIELDS}
    merged["language_origin"] = item.language_origin if "language" in kept else fields.language_origin
    merged["topics_origin"] = item.topics_origin if "topics" in kept else fields.topics_origin
    merged["date_origin"] = item.date_origin if "published_at" in kept else fields.date_origin
    return merged


def get_item(session: Session, item_id: int) -> NewsItem:
    item = session.get(NewsItem, item_id)
    if item is None:
        raise NotFound(f"no news item {item_id}")
    return item


@dataclass(frozen=True)
class NewsFilter:
    """What ``news list`` selects; every part is optional."""

    since: datetime | None = None
    until: datetime | None = None
    language: str | None = None
    topic: str | None = None
    status: NewsStatus | None = None
    limit: int | None = None


def list_items(session: Session, query: NewsFilter) -> Sequence[NewsItem]:
    """Items of the filter, newest first."""
    statement = select(NewsItem)
    if query.since is not None:
        statement = statement.where(NewsItem.published_at >= query.since)
    if query.until is not None:
        statement = statement.where(NewsItem.published_at < query.until)
    if query.language:
        statement = statement.where(NewsItem.language == query.language)
    if query.topic:
        padded = literal(",") + NewsItem.topics + literal(",")
        statement = statement.where(padded.contains(f",{query.topic},", autoescape=True))
    if query.status is not None:
        statement = statement.where(NewsItem.status == query.status)
    statement = statement.order_by(NewsItem.published_at.desc(), NewsItem.id.desc())
    if query.limit:
        statement = statement.limit(query.limit)
    return session.scalars(statement).all()


def item_as_dict(item: NewsItem, *, with_body: bool = True) -> dict[str, Any]:
    """A JSON-ready view of an item."""
    data: dict[str, Any] = {
        "id": item.id,
        "title": item.title,
        "language": item.language,
        "language_origin": item.language_origin,
        "published_at": item.published_at.isoformat(),
        "date_origin": item.date_origin,
        "topics": item.topic_list,
        "topics_origin": item.topics_origin,
        "status": item.status.value,
        "changed": item.changed,
        "summary": item.summary,
        "link": item.link,
        "image": item.image,
        "image_alt": item.image_alt,
        "translation_key": item.translation_key,
        "source": item.source,
        "source_kind": item.source_kind,
        "source_id": item.source_id,
        "content_hash": item.content_hash,
        "overrides": list(item.overrides or []),
    }
    if with_body:
        data["body"] = item.body
    return data
