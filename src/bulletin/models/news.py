"""News items gathered from text pages, Markdown files and feeds, and the state of polled feeds."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bulletin.models.base import Base, UTCDateTime, utcnow


class NewsStatus(enum.StrEnum):
    NEW = "new"
    IN_EDITION = "in_edition"
    EXCLUDED = "excluded"


class NewsItem(Base):
    """One story in one language.

    ``body`` is a list of blocks, each a dict: ``{"type": "paragraph", "text": ...}``,
    ``{"type": "list", "items": [...]}``, ``{"type": "link", "url": ..., "label": ...}``
    or ``{"type": "heading", "text": ...}``.
    """

    __tablename__ = "news_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(2000))
    image: Mapped[str | None] = mapped_column(String(2000))
    image_alt: Mapped[str | None] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(8), index=True)
    # Where the language came from: source, option or detected.
    language_origin: Mapped[str] = mapped_column(String(16), default="source")
    published_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Where the date came from: option, metadata, feed or mtime.
    date_origin: Mapped[str] = mapped_column(String(16), default="metadata")
    # Sorted, comma-separated interest keys.
    topics: Mapped[str] = mapped_column(String(1000), default="")
    # Where the topics came from: source, keywords or staff.
    topics_origin: Mapped[str] = mapped_column(String(16), default="keywords")
    # Items sharing a translation key are the same story in other languages.
    translation_key: Mapped[str | None] = mapped_column(String(300), index=True)
    source: Mapped[str] = mapped_column(String(2000))
    source_kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(700))
    content_hash: Mapped[str] = mapped_column(String(64))
    # Hash of what the source said at the last ingest: an unchanged source leaves the item alone,
    # even when staff edited it since.
    source_hash: Mapped[str | None] = mapped_column(String(64))
    # Names of the fields staff set by hand ("title", "summary", "translation_key", ...); a changed
    # source does not overwrite them.
    overrides: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[NewsStatus] = mapped_column(
        Enum(
            NewsStatus, name="news_status", native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
        ),
        default=NewsStatus.NEW,
    )
    # Set when a re-ingest changed the item; the workflow voids approvals that include it.
    changed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("source_kind", "source_id", name="uq_news_items_source"),)

    @property
    def topic_list(self) -> list[str]:
        return [key for key in self.topics.split(",") if key]


class FeedState(Base):
    """Validators of the last fetch of a feed URL, so an unchanged feed costs one request."""

    __tablename__ = "feed_states"

    url: Mapped[str] = mapped_column(String(2000), primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NewsCorrection(Base):
    """A split or merge staff made to the items of one source page, replayed at every ingest of it.

    ``action`` is ``split`` (``item_key`` is cut at the line ``at``) or ``merge`` (``other_key`` is
    appended to ``item_key``); keys are the items' ``source_id``.
    """

    __tablename__ = "news_corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(2000))
    action: Mapped[str] = mapped_column(String(16))
    item_key: Mapped[str] = mapped_column(String(700))
    other_key: Mapped[str | None] = mapped_column(String(700))
    at: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


Index("ix_news_corrections_source", NewsCorrection.source)
Index("ix_news_items_status_published", NewsItem.status, NewsItem.published_at)
Index("ix_news_items_link", NewsItem.link)
