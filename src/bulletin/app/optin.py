"""Double opt-in from the web form, and leaving or coming back from a signed link.

A subscription request never tells the requester whether the address was known: a new,
pending, unsubscribed or erased address gets a confirmation email (a signed link valid seven
days), an active one gets a "you are already subscribed" email with its preferences link, and a
blocked or bounced one gets nothing. Only a new address is stored before its link is followed.
The database work returns an :class:`OptinEmail` plan; the caller sends it after
the transaction has ended, so no transaction is held across SMTP.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from bulletin.app import throttle
from bulletin.app.links import (
    MAX_TOKEN_LENGTH,
    InvalidToken,
    email_digest,
    read_token,
    subscriber_by_id,
    subscriber_url,
    token_matches,
)
from bulletin.app.subscribers import (
    add_subscriber,
    check_interests,
    check_language,
    clean_name,
    confirm_subscriber,
    find_subscriber,
    normalize_email,
    set_status,
    suppression_of,
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
    """An opt-in email to send once the transaction is over.

    ``subscriber_id`` is 0 for an erased address asking again: nothing is stored for it until
    the link is followed, so ``request`` carries the whole request. For a pending or
    unsubscribed address ``request`` carries the new choices; the stored ones stay until then.
    ``name`` is the greeting: the stored name of a known address, never a stranger's request.
    """

    kind: Literal["confirm", "already_subscribed", "welcome"]
    subscriber_id: int
    email: str
    name: str | None
    language: str
    link_nonce: str = ""
    request: dict[str, Any] | None = None
    # Comma-joined interest keys ("" is every topic), shown in the welcome email.
    interests: str = ""


def optin_url(settings: Settings, plan: OptinEmail) -> str:
    """The link of an opt-in email: the confirmation link, or the preferences link of a subscriber."""
    if plan.kind == "confirm":
        return subscriber_url(settings, "confirm", plan.subscriber_id, plan.email, plan.link_nonce, plan.request)
    return subscriber_url(settings, "preferences", plan.subscriber_id, plan.email, plan.link_nonce)


def _state(subscriber: Subscriber) -> str:
    """What a request was made against; a link stops confirming once the subscriber changes."""
    return f"{subscriber.status.value}:{subscriber.updated_at.isoformat()}"


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

    Only a new address is stored at once (as pending). A request about an address that is
    pending, unsubscribed or erased stores nothing: it travels in the confirmation link and is
    applied when the link is followed, so nobody can change another person's record.

    Raises InvalidInput for a bad address, language, topic or name, and RateLimited when the
    client IP asked for too many emails in the last hour. When one address was sent too many
    emails in 24 hours nothing happens, silently, so the answer still reveals nothing.
    """
    address = normalize_email(email)
    language = check_language(settings, language)
    canonical = check_interests(settings, interests)
    name = clean_name(name)
    now = now or utcnow()
    ip_key = throttle.rate_key(session, ip)
    if not throttle.allowed(session, "optin-ip", ip_key, settings.web.confirm_emails_per_ip, IP_WINDOW, now=now):
        raise RateLimited("too many subscription requests from your network; please try again in an hour")
    throttle.record_event(session, "optin-ip", ip_key, now=now)
    address_key = throttle.rate_key(session, address)
    if not throttle.allowed(
        session, "optin-address", address_key, settings.web.confirm_emails_per_address, ADDRESS_WINDOW, now=now
    ):
        log.info("opt-in email not sent: rate limit of the address reached")
        return None

    choices: dict[str, Any] = {"language": language, "interests": canonical, "name": name}
    subscriber = find_subscriber(session, address)
    plan: OptinEmail
    if subscriber is None:
        erasure = suppression_of(session, address)
        if erasure is not None:
            request = {**choices, "email": address, "erased": erasure}
            plan = OptinEmail("confirm", 0, address, None, language, "", request)
        else:
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
            plan = OptinEmail("confirm", subscriber.id, subscriber.email, name, language, subscriber.link_nonce)
    elif subscriber.status in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
        request = {**choices, "state": _state(subscriber)}
        plan = OptinEmail(
            "confirm", subscriber.id, subscriber.email, subscriber.name, language, subscriber.link_nonce, request
        )
    elif subscriber.status == SubscriberStatus.ACTIVE:
        plan = OptinEmail(
            "already_subscribed",
            subscriber.id,
            subscriber.email,
            subscriber.name,
            language,
            subscriber.link_nonce,
        )
    else:
        log.info("opt-in email not sent: the address is %s", subscriber.status.value)
        return None
    throttle.record_event(session, "optin-address", address_key, now=now)
    session.flush()
    return plan


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation link names, read without changing anything."""

    # None for an erased address asking again: no row exists until the link is followed.
    subscriber: Subscriber | None
    email: str
    language: str
    interests: list[str]
    # The link can still confirm (a pending subscriber, or a request that is still current).
    waiting: bool
    request: dict[str, Any] | None


def _request_field(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str):
        raise InvalidToken("invalid")
    return value


def read_confirmation(session: Session, settings: Settings, token: str) -> Confirmation:
    """The confirmation a link holds; InvalidToken if tampered, truncated, expired or stale."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("invalid")
    subject = read_token(settings.secret_key, "confirm", token)
    request = subject.request
    if subject.subscriber_id == 0:
        # An erased address: valid while that very erasure stands and no one holds the address.
        if request is None:
            raise InvalidToken("invalid")
        email = _request_field(request, "email")
        if email_digest(email) != subject.email_digest or find_subscriber(session, email) is not None:
            raise InvalidToken("invalid")
        if suppression_of(session, email) != request.get("erased"):
            raise InvalidToken("invalid")
        return Confirmation(None, email, _request_field(request, "language"), _interests_of(request), True, request)
    subscriber = subscriber_by_id(session, subject.subscriber_id)
    if subscriber is None or not token_matches(subject, subscriber):
        raise InvalidToken("invalid")
    if request is None:
        waiting = subscriber.status == SubscriberStatus.PENDING
        return Confirmation(subscriber, subscriber.email, subscriber.language, subscriber.interest_list, waiting, None)
    waiting = request.get("state") == _state(subscriber) and subscriber.status in (
        SubscriberStatus.PENDING,
        SubscriberStatus.UNSUBSCRIBED,
    )
    return Confirmation(
        subscriber,
        subscriber.email,
        _request_field(request, "language") if waiting else subscriber.language,
        _interests_of(request) if waiting else subscriber.interest_list,
        waiting,
        request,
    )


def _interests_of(request: dict[str, Any]) -> list[str]:
    return [key for key in _request_field(request, "interests").split(",") if key]


def confirm_by_token(
    session: Session, settings: Settings, token: str, *, ip: str | None, user_agent: str | None
) -> tuple[Subscriber | None, bool]:
    """Confirm what a confirmation link names; (subscriber, whether anything changed).

    A pending subscription is activated; a request carried in the link (about an unsubscribed,
    pending or erased address) is applied now, and only if nothing changed since it was made.
    An old link of someone who has since left does not bring them back.
    """
    found = read_confirmation(session, settings, token)
    subscriber = found.subscriber
    if not found.waiting:
        return subscriber, False
    request = found.request
    name = request.get("name") if request else None
    if subscriber is None:
        assert request is not None
        subscriber = add_subscriber(
            session,
            settings,
            found.email,
            language=found.language,
            name=name if isinstance(name, str) else None,
            interests=found.interests,
            confirmed=True,
            source="web",
            actor=ACTOR,
            ip=ip,
            user_agent=user_agent,
        )
        return subscriber, True
    if request is not None:
        update_subscriber(
            session,
            settings,
            subscriber,
            actor=ACTOR,
            language=found.language,
            interests=found.interests,
            # A request without a name keeps the stored one.
            name=name if isinstance(name, str) else None,
        )
        subscriber.consent_source = "web"
        subscriber.consent_at = utcnow()
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
        link_nonce=subscriber.link_nonce,
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
