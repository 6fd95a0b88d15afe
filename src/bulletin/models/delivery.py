"""The delivery ledger: one row per (edition, subscriber), moved forward only after the fact."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bulletin.models.base import Base, UTCDateTime, utcnow


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"


class Delivery(Base):
    """The fate of one edition for one subscriber."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("edition_variants.id", ondelete="CASCADE"))
    state: Mapped[DeliveryState] = mapped_column(
        Enum(
            DeliveryState,
            name="delivery_state",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=DeliveryState.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_reply: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(300))
    # Times this row was found handed over, with no recorded answer, after a crash: it may have arrived twice.
    uncertain: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    # Set, in a committed transaction, just before the message's data is written to the server:
    # a ``sending`` row without it never reached the server.
    handed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What came back after the SMTP transaction (bulletin.mta.bounces): hard, soft, complaint or
    # unsubscribe, with the RFC 3463 status and the remote diagnostic.
    report_kind: Mapped[str | None] = mapped_column(String(16))
    report_status: Mapped[str | None] = mapped_column(String(16))
    report_detail: Mapped[str | None] = mapped_column(Text)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id", name="uq_deliveries_edition_subscriber"),
        Index("ix_deliveries_due", "edition_id", "state", "next_attempt_at"),
    )


class SendRatePermit(Base):
    """Send permits a PostgreSQL worker took from the shared rate limit (see ``bulletin.mta.ratelimit``).

    ``ends_at`` is NULL while the permits may still be in use; then it is the moment (database
    clock, epoch seconds) by which every message sent with them had been answered.
    """

    __tablename__ = "send_rate_permits"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer)
    ends_at: Mapped[float | None] = mapped_column(Float(precision=53))

    __table_args__ = (Index("ix_send_rate_permits_ends_at", "ends_at"),)
