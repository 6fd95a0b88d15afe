"""SQLAlchemy models of bulletin, one module per concept."""

from bulletin.models.base import Base, UTCDateTime, utcnow
from bulletin.models.delivery import Delivery, DeliveryState, SendRatePermit
from bulletin.models.edition import (
    Approval,
    Edition,
    EditionItem,
    EditionStatus,
    EditionTransition,
    EditionVariant,
)
from bulletin.models.inbound import InboundKind, InboundMail
from bulletin.models.news import FeedState, NewsCorrection, NewsItem, NewsStatus
from bulletin.models.staff import Lock, RateEvent, StaffMember, StaffRole, StaffSession
from bulletin.models.subscriber import Setting, Subscriber, SubscriberEvent, SubscriberStatus, Suppression

__all__ = [
    "Approval",
    "Base",
    "Delivery",
    "DeliveryState",
    "Edition",
    "EditionItem",
    "EditionStatus",
    "EditionTransition",
    "EditionVariant",
    "FeedState",
    "InboundKind",
    "InboundMail",
    "Lock",
    "NewsCorrection",
    "NewsItem",
    "NewsStatus",
    "RateEvent",
    "SendRatePermit",
    "Setting",
    "StaffMember",
    "StaffRole",
    "StaffSession",
    "Subscriber",
    "SubscriberEvent",
    "SubscriberStatus",
    "Suppression",
    "UTCDateTime",
    "utcnow",
]
