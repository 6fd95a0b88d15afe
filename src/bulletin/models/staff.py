"""Staff accounts, the web's rate-limit log and named locks."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from bulletin.models.base import Base, UTCDateTime, utcnow


class StaffRole(enum.StrEnum):
    EDITOR = "editor"
    APPROVER = "approver"
    ADMIN = "admin"


class StaffMember(Base):
    """A communications or admin person who logs in to the staff pages."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    role: Mapped[StaffRole] = mapped_column(
        Enum(StaffRole, name="staff_role", native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    email: Mapped[str | None] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StaffSession(Base):
    """A staff login: the cookie holds a random id whose digest is the key here.

    Deleting the row ends the login at once (logout, password change, account removal,
    ``bulletin staff sessions --end``), whatever copies of the cookie exist.
    """

    __tablename__ = "staff_sessions"

    # sha256 of the id in the cookie, so a copy of the database does not open any session.
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))


class RateEvent(Base):
    """One rate-limited action (a confirmation email, a login attempt), by key, for sliding windows."""

    __tablename__ = "rate_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_rate_events_lookup", "kind", "key", "at"),)


class Lock(Base):
    """A named lock held by one process (the scheduler, the SQLite sender), with a heartbeat."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
