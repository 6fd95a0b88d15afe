"""Subscribers, their status history and the erasure suppression list."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from bulletin.models.base import Base, UTCDateTime, utcnow


class SubscriberStatus(enum.StrEnum):
    """Where a subscriber stands; only ``active`` ones receive editions."""

    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    BLOCKED = "blocked"


def new_link_nonce() -> str:
    """A fresh random value that every signed link of a subscriber carries (rotated to revoke them)."""
    return secrets.token_urlsafe(12)


def new_subscriber_values(
    email: str,
    email_key: str,
    *,
    name: str | None,
    language: str,
    interests: str,
    status: SubscriberStatus,
    source: str,
    confirmed: bool,
    at: datetime,
) -> dict[str, Any]:
    """The columns of a new subscriber, for a bulk ``INSERT`` (imports, benchmarks)."""
    return {
        "email": email,
        "email_key": email_key,
        "name": name,
        "language": language,
        "interests": interests,
        "status": status,
        "consent_source": source,
        "consent_at": at,
        "confirmed_at": at if confirmed else None,
        "hard_bounces": 0,
        "created_at": at,
        "updated_at": at,
    }


def status_enum() -> Enum:
    return Enum(
        SubscriberStatus,
        name="subscriber_status",
        native_enum=False,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Subscriber(Base):
    """A person who opted in (or was imported) to receive the bulletin."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased address: the unique key, so that case variants are one subscriber.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(8))
    # Sorted, comma-separated interest keys; the empty string means every topic.
    interests: Mapped[str] = mapped_column(String(1000), default="")
    status: Mapped[SubscriberStatus] = mapped_column(status_enum(), default=SubscriberStatus.PENDING)
    consent_source: Mapped[str] = mapped_column(String(40))
    consent_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_user_agent: Mapped[str | None] = mapped_column(String(400))
    # Inside every signed link; a new value makes all the subscriber's earlier links stop working.
    link_nonce: Mapped[str] = mapped_column(String(32), default=new_link_nonce)
    # Editions in which delivery to this address failed permanently, for the bounce rule.
    hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    events: Mapped[list[SubscriberEvent]] = relationship(
        back_populates="subscriber",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SubscriberEvent.id",
    )

    # AUTOINCREMENT: SQLite never hands an erased subscriber's id to someone else (PostgreSQL never does).
    __table_args__ = (
        Index("ix_subscribers_status_language_interests", "status", "language", "interests"),
        {"sqlite_autoincrement": True},
    )

    @property
    def interest_list(self) -> list[str]:
        return [key for key in self.interests.split(",") if key]


class SubscriberEvent(Base):
    """One entry of a subscriber's history: every status change and edit is appended here."""

    __tablename__ = "subscriber_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    action: Mapped[str] = mapped_column(String(40))
    old_status: Mapped[str | None] = mapped_column(String(16))
    new_status: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(120))
    detail: Mapped[str | None] = mapped_column(Text)

    subscriber: Mapped[Subscriber] = relationship(back_populates="events")


class Suppression(Base):
    """An erased address, kept only as a salted hash so a later import can skip it."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(40), default="erased")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Setting(Base):
    """Small key/value facts about this database (the suppression salt, locks)."""

    __tablename__ = "bulletin_meta"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


def stored_salt(session: Session, key: str, *, create: bool = True) -> bytes | None:
    """This database's random secret named ``key`` (made on first use with ``create``; else None)."""
    row = session.get(Setting, key)
    if row is None:
        if not create:
            return None
        row = Setting(key=key, value=secrets.token_hex(32))
        session.add(row)
        session.flush()
    return bytes.fromhex(row.value)
