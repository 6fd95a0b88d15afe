"""Double opt-in from the web form, and leaving or coming back from a signed link.

A subscription request never tells the requester whether the address was known: a new or
pending address gets a confirmation email (a signed link valid seven days), an active one gets
a "you are already subscribed" email with its preferences link, and a blocked or bounced one
gets nothing. The database work returns an :class:`OptinEmail` plan; the caller sends it after
the transaction has ended, so no transaction is held across SMTP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.orm import Session

from bulletin.app import throttle
from bulletin.app.links import subscriber_for_token
from bulletin.app.subscribers import (
    add_subscriber,
    check_interests,
    check_language,
    clean_name,
    confirm_subscriber,
    find_subscriber,
    normalize_email,
    set_status,
    update_subscriber,
)
from bulletin.config import Settings
from bulletin.errors import BulletinError
from bulletin.models import Subscriber, SubscriberStatus, utcnow

log = logging.getLogger(__name__)

ADDRESS_WINDOW = timedelta(hours=24)
IP_WINDOW = timedelta(hours=1)
ACTOR = "web"


class RateLimited(BulletinError):
    """Too many subscription requests from one client address."""


@dataclass(frozen=True)
class OptinEmail:
    """An opt-in email to send once the transaction is over."""

    kind: Literal["confirm", "already_subscribed", "welcome"]
    subscriber_id: int
    email: str
    name: str | None
    language: str
    # Comma-joined interest keys ("" is every topic), shown in the welcome email.
    interests: str = ""


def request_subscription(
    session: Session,
    settings: Settings,
    *,
    email: str,
    language: str,
    interests: Sequence[str] = (),
    name: str | None = None,
    ip: str,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> OptinEmail | None:
    """Record a subscription request from the web form; return the email to send, if any.

    Raises InvalidInput for a bad address, language or topic, and RateLimited when the
    client IP asked for too many emails in the last hour. When one address was sent too many
    emails in 24 hours nothing happens, silently, so the answer still reveals nothing.
    """
    address = normalize_email(email)
    language = check_language(settings, language)
    canonical = check_interests(settings, interests)
    name = clean_name(name)
    now = now or utcnow()
    ip_key = throttle.rate_key(ip)
    if not throttle.allowed(session, "optin-ip", ip_key, settings.web.confirm_emails_per_ip, IP_WINDOW, now=now):
        raise RateLimited("too many subscription requests from your network; please try again in an hour")
    throttle.record_event(session, "optin-ip", ip_key, now=now)
    address_key = throttle.rate_key(address)
    if not throttle.allowed(
        session, "optin-address", address_key, settings.web.confirm_emails_per_address, ADDRESS_WINDOW, now=now
    ):
        log.info("opt-in email not sent: rate limit of the address reached")
        return None

    subscriber = find_subscriber(session, address)
    if subscriber is None:
        subscriber = add_subscriber(
            session,
            settings,
            address,
            language=language,
            name=name,
            interests=canonical.split(",") if canonical else [],
            confirmed=False,
            source="web",
            actor=ACTOR,
            ip=ip,
            user_agent=user_agent,
        )
        kind: Literal["confirm", "already_subscribed"] = "confirm"
    elif subscriber.status in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
        # Nothing is confirmed yet, so the latest request's choices replace the earlier ones.
        update_subscriber(
            session,
            settings,
            subscriber,
            actor=ACTOR,
            language=language,
            interests=canonical.split(",") if canonical else [],
            name=name if name is not None else subscriber.name or "",
        )
        subscriber.consent_source = "web"
        subscriber.consent_at = now
        subscriber.consent_ip = ip[:64]
        subscriber.consent_user_agent = user_agent[:400] if user_agent else None
        set_status(session, subscriber, SubscriberStatus.PENDING, ACTOR, detail="subscribed again from the web form")
        kind = "confirm"
    elif subscriber.status == SubscriberStatus.ACTIVE:
        kind = "already_subscribed"
    else:
        log.info("opt-in email not sent: the address is %s", subscriber.status.value)
        return None
    throttle.record_event(session, "optin-address", address_key, now=now)
    session.flush()
    return OptinEmail(
        kind=kind, subscriber_id=subscriber.id, email=subscriber.email, name=subscriber.name, language=language
    )


def confirm_by_token(
    session: Session, settings: Settings, token: str, *, ip: str | None, user_agent: str | None
) -> tuple[Subscriber, bool]:
    """Activate the subscriber a confirmation link names; (subscriber, whether it changed).

    Only a pending subscription is confirmed: an old link of someone who has since left does
    not bring them back.
    """
    subscriber = subscriber_for_token(session, settings, "confirm", token)
    if subscriber.status != SubscriberStatus.PENDING:
        return subscriber, False
    changed = confirm_subscriber(session, subscriber, actor=ACTOR, ip=ip, user_agent=user_agent)
    return subscriber, changed


def welcome_email(settings: Settings, subscriber: Subscriber) -> OptinEmail | None:
    """The welcome email of a subscription just confirmed, unless ``web.welcome_email`` is off."""
    if not settings.web.welcome_email:
        return None
    return OptinEmail(
        kind="welcome",
        subscriber_id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        language=subscriber.language,
        interests=subscriber.interests,
    )


def unsubscribe(session: Session, subscriber: Subscriber, *, via: str) -> bool:
    """Stop all mail to a subscriber at once; False if there was nothing to stop."""
    if subscriber.status in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BLOCKED):
        return False
    return set_status(session, subscriber, SubscriberStatus.UNSUBSCRIBED, ACTOR, detail=f"unsubscribed via {via}")


def resubscribe(session: Session, subscriber: Subscriber, *, ip: str | None, user_agent: str | None) -> bool:
    """Come back from the preferences link; the link proves the mailbox is theirs, so this is consent."""
    if subscriber.status not in (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.PENDING):
        return False
    subscriber.consent_source = "web"
    subscriber.consent_at = utcnow()
    return confirm_subscriber(session, subscriber, actor=ACTOR, ip=ip, user_agent=user_agent)
