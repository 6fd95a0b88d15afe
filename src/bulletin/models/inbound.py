"""Mail that came back: bounces, complaints, unsubscribe requests and auto-replies, each acted on once."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bulletin.models.base import Base, UTCDateTime, utcnow


class InboundKind(enum.StrEnum):
    """What a message that reached the bounce or unsubscribe mailbox turned out to be."""

    HARD_BOUNCE = "hard"
    SOFT_BOUNCE = "soft"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    AUTO_REPLY = "auto-reply"


class InboundMail(Base):
    """One processed message: its Message-ID (so it acts once), what it was and what was done.

    Unrecognised messages are not recorded: they are left for a person to read.
    """

    __tablename__ = "inbound_mail"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the Message-ID (of the raw message when it has none): the idempotency key.
    message_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998))
    kind: Mapped[InboundKind] = mapped_column(
        Enum(
            InboundKind,
            name="inbound_kind",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"), index=True)
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="SET NULL"), index=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    recipient: Mapped[str | None] = mapped_column(String(320))
    # The RFC 3463 status code (5.1.1) and the remote MTA's diagnostic, when the report gives them.
    status: Mapped[str | None] = mapped_column(String(16))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    # What was done: "bounced", "counted", "unsubscribed", "ignored", "none" (already so, or unknown).
    action: Mapped[str] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_inbound_mail_subscriber_kind", "subscriber_id", "kind", "received_at"),)
