"""Editions, their ordered items, rendered variants, approvals and lifecycle log."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bulletin.models.base import Base, UTCDateTime, utcnow


class EditionStatus(enum.StrEnum):
    DRAFT = "draft"
    REVIEW = "review"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class Edition(Base):
    """One issue of the bulletin: the news of a period, with a subject and intro per language."""

    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[EditionStatus] = mapped_column(
        Enum(
            EditionStatus,
            name="edition_status",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=EditionStatus.DRAFT,
    )
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    # {language: subject} and {language: introduction}.
    subjects: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    intros: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Hash of the templates and settings the variants were rendered with.
    render_fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(120), default="cli")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    send_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    items: Mapped[list[EditionItem]] = relationship(
        back_populates="edition", cascade="all, delete-orphan", order_by="EditionItem.position"
    )
    variants: Mapped[list[EditionVariant]] = relationship(
        back_populates="edition", cascade="all, delete-orphan", order_by="EditionVariant.id"
    )


class EditionItem(Base):
    """A news item's place in an edition; excluded items keep their row and position."""

    __tablename__ = "edition_items"

    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True)
    news_item_id: Mapped[int] = mapped_column(ForeignKey("news_items.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)

    edition: Mapped[Edition] = relationship(back_populates="items")


class EditionVariant(Base):
    """The rendering of an edition for one (language, interest set).

    ``html`` and ``text`` hold per-recipient placeholders that the sender fills in;
    ``content_hash`` covers subject, HTML and text with the placeholders unfilled.
    """

    __tablename__ = "edition_variants"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"), index=True)
    language: Mapped[str] = mapped_column(String(8))
    # Sorted, comma-separated interest keys; empty means every topic.
    interests: Mapped[str] = mapped_column(String(1000), default="")
    subject: Mapped[str] = mapped_column(String(500))
    preheader: Mapped[str] = mapped_column(String(500), default="")
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    html_size: Mapped[int] = mapped_column(Integer)
    item_count: Mapped[int] = mapped_column(Integer)
    # Problems that forbid approval (size budget, missing unsubscribe link), one per line.
    problems: Mapped[str] = mapped_column(Text, default="")
    rendered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    edition: Mapped[Edition] = relationship(back_populates="variants")

    __table_args__ = (UniqueConstraint("edition_id", "language", "interests", name="uq_edition_variants_key"),)


class Approval(Base):
    """An approver's sign-off, locked to the content hash of every variant at that moment."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"), index=True)
    approver: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # {"lang|interests": content_hash} for every variant approved.
    variant_hashes: Mapped[dict[str, str]] = mapped_column(JSON)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    void_reason: Mapped[str | None] = mapped_column(Text)


class EditionTransition(Base):
    """Log of an edition's lifecycle: who moved it from which state to which, and when."""

    __tablename__ = "edition_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text)
