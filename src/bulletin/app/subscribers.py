"""Subscriber store: add, change, list, count and erase subscribers.

Plain functions over a Session; the caller (CLI command, web handler) owns the transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.orm import Session

from bulletin.app import throttle
from bulletin.config import Settings
from bulletin.errors import Conflict, InvalidInput, NotFound
from bulletin.models import Subscriber, SubscriberEvent, SubscriberStatus, Suppression, utcnow
from bulletin.models.subscriber import new_link_nonce, stored_salt
from bulletin.news.topics import topics_key

MAX_NAME_LENGTH = 100
# Characters that would let a display name pass for an address or markup in a header or page.
_NAME_FORBIDDEN = set("<>@")
SALT_KEY = "suppression_salt"


def normalize_email(raw: str) -> str:
    """Validate an address (syntax only, no DNS) and return its normalised form."""
    candidate = raw.strip()
    if not candidate:
        raise InvalidInput("empty email address")
    if len(candidate) > 320:
        raise InvalidInput(f"email address too long ({len(candidate)} characters)")
    try:
        result = validate_email(candidate, check_deliverability=False, allow_display_name=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email address {candidate!r}: {exc}") from None
    return str(result.normalized)


def email_key(email: str) -> str:
    """The case-insensitive identity of an address."""
    return email.strip().lower()


def interests_key(keys: Iterable[str]) -> str:
    """Interest keys as typed (any case, spaces) in their stored form; "" means every topic."""
    return topics_key({key.strip().lower() for key in keys})


def check_language(settings: Settings, language: str) -> str:
    language = language.strip().lower()
    if language not in settings.languages:
        raise InvalidInput(f"unknown language {language!r} (choose from {', '.join(settings.languages)})")
    return language


def check_interests(settings: Settings, keys: Iterable[str]) -> str:
    """Validate interest keys against the configuration and return their canonical key."""
    canonical = interests_key(keys)
    known = set(settings.interest_keys)
    unknown = [key for key in canonical.split(",") if key and key not in known]
    if unknown:
        raise InvalidInput(
            f"unknown interest {', '.join(repr(k) for k in unknown)} (choose from {', '.join(sorted(known))})"
        )
    return canonical


def clean_name(name: str | None) -> str | None:
    """A display name as plain text on one line, or None; InvalidInput for anything else.

    Runs of spaces, tabs and line breaks become one space. Refused: ``<``, ``>``, ``@`` (a
    name must never read as an address), control and format characters (bidi overrides,
    zero-width characters) and names over :data:`MAX_NAME_LENGTH` characters.
    """
    if name is None:
        return None
    cleaned = " ".join(name.split())
    if any(ch in _NAME_FORBIDDEN for ch in cleaned):
        raise InvalidInput("a name must not contain <, > or @")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in cleaned):
        raise InvalidInput("a name must not contain control or invisible characters")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInput(f"name longer than {MAX_NAME_LENGTH} characters")
    return cleaned or None


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.email_key == email_key(email))).one_or_none()


def get_subscriber(session: Session, email: str) -> Subscriber:
    subscriber = find_subscriber(session, email)
    if subscriber is None:
        raise NotFound(f"no subscriber with address {email.strip()!r}")
    return subscriber


def record_event(
    session: Session,
    subscriber: Subscriber,
    action: str,
    actor: str,
    *,
    old_status: SubscriberStatus | None = None,
    new_status: SubscriberStatus | None = None,
    detail: str | None = None,
) -> SubscriberEvent:
    event = SubscriberEvent(
        subscriber=subscriber,
        action=action,
        actor=actor,
        old_status=old_status.value if old_status else None,
        new_status=new_status.value if new_status else None,
        detail=detail,
        at=utcnow(),
    )
    session.add(event)
    return event


# ---------------------------------------------------------------------------
# Suppression list (right to erasure)


def suppression_salt(session: Session, *, create: bool) -> bytes | None:
    """This database's secret salt for suppression hashes, created on first erasure."""
    return stored_salt(session, SALT_KEY, create=create)


def suppression_hash(salt: bytes, email: str) -> str:
    return hmac.new(salt, email_key(email).encode("utf-8"), hashlib.sha256).hexdigest()


def is_suppressed(session: Session, email: str) -> bool:
    salt = suppression_salt(session, create=False)
    if salt is None:
        return False
    digest = suppression_hash(salt, email)
    return session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is not None


def suppression_of(session: Session, email: str) -> str | None:
    """Which erasure of this address stands (its row and time), or None when it is not erased."""
    salt = suppression_salt(session, create=False)
    if salt is None:
        return None
    row = session.scalars(select(Suppression).where(Suppression.email_hash == suppression_hash(salt, email))).first()
    return f"{row.id}:{row.created_at.isoformat()}" if row is not None else None


def lift_suppression(session: Session, email: str) -> bool:
    """Forget an erased address because it is being added again explicitly."""
    salt = suppression_salt(session, create=False)
    if salt is None:
        return False
    result = session.execute(delete(Suppression).where(Suppression.email_hash == suppression_hash(salt, email)))
    return bool(getattr(result, "rowcount", 0))


# ---------------------------------------------------------------------------
# Changes


def add_subscriber(
    session: Session,
    settings: Settings,
    email: str,
    *,
    language: str,
    name: str | None = None,
    interests: Iterable[str] = (),
    confirmed: bool = False,
    source: str = "cli",
    actor: str = "cli",
    ip: str | None = None,
    user_agent: str | None = None,
) -> Subscriber:
    """Create a subscriber; pending unless ``confirmed``. An erased address added explicitly is allowed again."""
    address = normalize_email(email)
    language = check_language(settings, language)
    canonical = check_interests(settings, interests)
    existing = find_subscriber(session, address)
    if existing is not None:
        raise Conflict(f"{existing.email} is already a subscriber ({existing.status.value})")
    # An admin's explicit add (or a confirmed one) is a fresh opt-in that lifts an erasure; an
    # unconfirmed web request does not, until the person confirms.
    lifted = lift_suppression(session, address) if confirmed or source == "cli" else False
    now = utcnow()
    status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
    subscriber = Subscriber(
        email=address,
        email_key=email_key(address),
        name=clean_name(name),
        language=language,
        interests=canonical,
        status=status,
        consent_source=source,
        consent_at=now,
        confirmed_at=now if confirmed else None,
        consent_ip=ip,
        consent_user_agent=user_agent[:400] if user_agent else None,
        created_at=now,
        updated_at=now,
    )
    session.add(subscriber)
    detail = "added again after erasure" if lifted else None
    record_event(session, subscriber, "subscribed", actor, new_status=status, detail=detail)
    session.flush()
    return subscriber


def set_status(
    session: Session, subscriber: Subscriber, status: SubscriberStatus, actor: str, detail: str | None = None
) -> bool:
    """Move a subscriber to ``status`` and append the change to its history; False if unchanged."""
    if subscriber.status == status:
        return False
    old = subscriber.status
    subscriber.status = status
    subscriber.updated_at = utcnow()
    record_event(session, subscriber, "status", actor, old_status=old, new_status=status, detail=detail)
    return True


def confirm_subscriber(
    session: Session,
    subscriber: Subscriber,
    *,
    actor: str,
    ip: str | None = None,
    user_agent: str | None = None,
) -> bool:
    """Record the opt-in confirmation and activate a pending (or unsubscribed) subscriber."""
    if subscriber.status in (SubscriberStatus.BLOCKED, SubscriberStatus.BOUNCED):
        raise Conflict(f"{subscriber.email} is {subscriber.status.value} and cannot be confirmed")
    if subscriber.status == SubscriberStatus.ACTIVE:
        return False
    lift_suppression(session, subscriber.email)
    subscriber.confirmed_at = utcnow()
    if ip is not None:
        subscriber.consent_ip = ip[:64]
    if user_agent is not None:
        subscriber.consent_user_agent = user_agent[:400]
    return set_status(session, subscriber, SubscriberStatus.ACTIVE, actor, detail="opt-in confirmed")


def update_subscriber(
    session: Session,
    settings: Settings,
    subscriber: Subscriber,
    *,
    actor: str,
    language: str | None = None,
    interests: Iterable[str] | None = None,
    name: str | None = None,
) -> list[str]:
    """Change language, interests or name; return the names of the fields that changed."""
    changes: list[str] = []
    if language is not None:
        language = check_language(settings, language)
        if language != subscriber.language:
            changes.append(f"language {subscriber.language} -> {language}")
            subscriber.language = language
    if interests is not None:
        canonical = check_interests(settings, interests)
        if canonical != subscriber.interests:
            changes.append(f"interests {subscriber.interests or '(all)'} -> {canonical or '(all)'}")
            subscriber.interests = canonical
    if name is not None:
        cleaned = clean_name(name)
        if cleaned != subscriber.name:
            changes.append("name")
            subscriber.name = cleaned
    if changes:
        subscriber.updated_at = utcnow()
        record_event(session, subscriber, "updated", actor, detail="; ".join(changes))
    return changes


def rotate_subscriber_links(session: Session, email: str) -> Subscriber:
    """Give a subscriber new links: every unsubscribe, preferences or confirmation link sent before stops working."""
    subscriber = get_subscriber(session, email)
    subscriber.link_nonce = new_link_nonce()
    subscriber.updated_at = utcnow()
    record_event(session, subscriber, "links rotated", "cli", detail="earlier links no longer work")
    return subscriber


def erase_subscriber(session: Session, email: str) -> None:
    """Delete everything about a person and keep only a salted hash so imports skip the address."""
    subscriber = get_subscriber(session, email)
    salt = suppression_salt(session, create=True)
    assert salt is not None
    digest = suppression_hash(salt, subscriber.email)
    if session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is None:
        session.add(Suppression(email_hash=digest, reason="erased", created_at=utcnow()))
    # Rate-limit records of the address go too: only the salted suppression hash remains.
    address_key = throttle.existing_rate_key(session, subscriber.email)
    if address_key is not None:
        throttle.clear_events(session, "optin-address", address_key)
    session.delete(subscriber)
    session.flush()


# ---------------------------------------------------------------------------
# Queries


@dataclass(frozen=True)
class SubscriberFilter:
    language: str | None = None
    interest: str | None = None
    status: SubscriberStatus | None = None


def _filtered(query_filter: SubscriberFilter) -> Select[Subscriber]:
    statement = select(Subscriber)
    if query_filter.language:
        statement = statement.where(Subscriber.language == query_filter.language)
    if query_filter.status:
        statement = statement.where(Subscriber.status == query_filter.status)
    if query_filter.interest:
        # Subscribers with no interests receive every topic, so they match any interest.
        padded = "," + Subscriber.interests + ","
        statement = statement.where(or_(padded.contains(f",{query_filter.interest},"), Subscriber.interests == ""))
    return statement


def iter_subscribers(session: Session, query_filter: SubscriberFilter, batch: int = 1000) -> Iterator[Subscriber]:
    """Stream matching subscribers in id order without loading them all."""
    statement = _filtered(query_filter).order_by(Subscriber.id).execution_options(yield_per=batch)
    yield from session.scalars(statement)


def count_subscribers(session: Session, query_filter: SubscriberFilter) -> int:
    subquery = _filtered(query_filter).subquery()
    return int(session.scalar(select(func.count()).select_from(subquery)) or 0)


ALL_TOPICS = "(all topics)"


def subscriber_stats(session: Session) -> list[tuple[str, str, str, int]]:
    """Counts by (status, language, interest); a subscriber with several interests counts in each."""
    rows = session.execute(
        select(Subscriber.status, Subscriber.language, Subscriber.interests, func.count()).group_by(
            Subscriber.status, Subscriber.language, Subscriber.interests
        )
    )
    counts: Counter[tuple[str, str, str]] = Counter()
    for status, language, interests, count in rows:
        keys = [key for key in interests.split(",") if key] or [ALL_TOPICS]
        for key in keys:
            counts[(status.value, language, key)] += count
    return sorted((s, lang, i, n) for (s, lang, i), n in counts.items())


def status_totals(session: Session) -> dict[str, int]:
    rows = session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
    return {status.value: count for status, count in rows}


def subscriber_as_dict(subscriber: Subscriber) -> dict[str, object]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "language": subscriber.language,
        "interests": subscriber.interest_list,
        "status": subscriber.status.value,
        "consent": {
            "source": subscriber.consent_source,
            "at": iso(subscriber.consent_at),
            "confirmed_at": iso(subscriber.confirmed_at),
            "ip": subscriber.consent_ip,
            "user_agent": subscriber.consent_user_agent,
        },
        "created_at": iso(subscriber.created_at),
        "updated_at": iso(subscriber.updated_at),
    }
