"""Signed links for subscribers: unsubscribe, preferences and opt-in confirmation.

Tokens are signed with ``BULLETIN_SECRET_KEY`` by itsdangerous (its default HMAC-SHA1 over a
key derived per purpose, compared in constant time) and bound to one subscriber: the id, a
digest of the address and the subscriber's random link nonce. A new nonce (on erasure, on
subscribing again after erasure, or on demand with ``bulletin subscribers rotate-links``) makes
every earlier link of the person stop working; ids are never reused. Unsubscribe and preference
tokens live until the nonce changes; confirmation tokens expire after seven days.

A confirmation token may also carry the request it confirms (language, topics, name, and the
address when no subscriber row exists), so that a request about an address already known
stores nothing until the link is followed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.models import Subscriber
from bulletin.models.base import MAX_INTEGER_ID

Purpose = Literal["unsubscribe", "preferences", "confirm"]
CONFIRM_MAX_AGE = 7 * 24 * 3600

# URL paths of the web pages; the web app mounts its routes on these.
PATHS: dict[Purpose, str] = {
    "unsubscribe": "/unsubscribe/",
    "preferences": "/preferences/",
    "confirm": "/confirm/",
}


class InvalidToken(Exception):
    """A token that was tampered with, truncated, expired or made for another purpose."""

    def __init__(self, reason: Literal["invalid", "expired"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenSubject:
    subscriber_id: int
    email_digest: str
    nonce: str
    # The request a confirmation link carries, if any (see :mod:`bulletin.app.optin`).
    request: dict[str, Any] | None = None


@functools.lru_cache(maxsize=256)
def email_digest(email: str) -> str:
    """A short digest of the lower-cased address, binding a token to it."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:16]


# Serializers hold no state between calls; building one costs more than signing a token with it.
@functools.lru_cache(maxsize=64)
def _serializer(secret: str, purpose: Purpose) -> URLSafeSerializer | URLSafeTimedSerializer:
    if purpose == "confirm":
        return URLSafeTimedSerializer(secret, salt="bulletin-confirm")
    return URLSafeSerializer(secret, salt=f"bulletin-{purpose}")


@functools.lru_cache(maxsize=64)
def _link_mac(secret: str, purpose: Purpose) -> hmac.HMAC:
    """The keyed MAC of an untimed serializer, its key derived once (itsdangerous derives it per token)."""
    signer = _serializer(secret, purpose).make_signer()
    return hmac.new(signer.derive_key(), digestmod=signer.digest_method)


# Serializes payloads only: an untimed serializer's payload depends on neither its key nor its salt.
_PAYLOADS = URLSafeSerializer("payloads only, never signs")


@functools.lru_cache(maxsize=64)
def _untimed_payload(subscriber_id: int, digest: str, nonce: str) -> bytes:
    # The unsubscribe and preference links of one message share it.
    return _PAYLOADS.dump_payload([subscriber_id, digest, nonce])


def make_token(
    secret: str,
    purpose: Purpose,
    subscriber_id: int,
    email: str,
    nonce: str,
    request: dict[str, Any] | None = None,
) -> str:
    payload: list[Any] = [subscriber_id, email_digest(email), nonce]
    if request is not None:
        payload.append(request)
    serializer = _serializer(secret, purpose)
    if isinstance(serializer, URLSafeTimedSerializer):
        return str(serializer.dumps(payload))
    # Every message carries two of these, with the same payload: the serializer's own, made once,
    # signed with a MAC whose key is derived once. The token is the one ``serializer.dumps``
    # makes (a test holds it).
    value = serializer.dump_payload(payload) if request else _untimed_payload(subscriber_id, payload[1], nonce)
    mac = _link_mac(secret, purpose).copy()
    mac.update(value)
    return (value + b"." + base64_encode(mac.digest())).decode("ascii")


def read_token(secret: str, purpose: Purpose, token: str, *, max_age: int = CONFIRM_MAX_AGE) -> TokenSubject:
    """Check a token and return whom it names; raise InvalidToken otherwise."""
    serializer = _serializer(secret, purpose)
    try:
        if isinstance(serializer, URLSafeTimedSerializer):
            payload = serializer.loads(token, max_age=max_age)
        else:
            payload = serializer.loads(token)
    except SignatureExpired:
        raise InvalidToken("expired") from None
    except BadSignature:
        raise InvalidToken("invalid") from None
    if (
        not isinstance(payload, list)
        or len(payload) not in (3, 4)
        or not isinstance(payload[0], int)
        or isinstance(payload[0], bool)
        or not isinstance(payload[1], str)
        or not isinstance(payload[2], str)
        or (len(payload) == 4 and not isinstance(payload[3], dict))
    ):
        raise InvalidToken("invalid")
    request = payload[3] if len(payload) == 4 else None
    return TokenSubject(subscriber_id=payload[0], email_digest=payload[1], nonce=payload[2], request=request)


def token_matches(subject: TokenSubject, subscriber: Subscriber) -> bool:
    """Whether a token names this subscriber as they are now (same id, address and nonce)."""
    return (
        subject.subscriber_id == subscriber.id
        and hmac.compare_digest(subject.email_digest, email_digest(subscriber.email))
        and bool(subscriber.link_nonce)
        and hmac.compare_digest(subject.nonce, subscriber.link_nonce)
    )


def subscriber_url(
    settings: Settings,
    purpose: Purpose,
    subscriber_id: int,
    email: str,
    nonce: str,
    request: dict[str, Any] | None = None,
) -> str:
    """The absolute URL of a subscriber's signed page."""
    token = make_token(settings.secret_key, purpose, subscriber_id, email, nonce, request)
    return settings.web.base_url.rstrip("/") + PATHS[purpose] + token


# A token longer than this is not one of ours; refuse it before any work. A confirmation
# link carrying a request (an address, a name, topics) is the longest.
MAX_TOKEN_LENGTH = 2500


def subscriber_for_token(session: Session, settings: Settings, purpose: Purpose, token: str) -> Subscriber:
    """The subscriber a valid token names; InvalidToken if tampered, truncated, expired or stale."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("invalid")
    subject = read_token(settings.secret_key, purpose, token)
    subscriber = subscriber_by_id(session, subject.subscriber_id)
    if subscriber is None or not token_matches(subject, subscriber):
        raise InvalidToken("invalid")
    return subscriber


def subscriber_by_id(session: Session, subscriber_id: int) -> Subscriber | None:
    # An id beyond the column's range names nobody, and PostgreSQL would refuse the query.
    if not 0 < subscriber_id <= MAX_INTEGER_ID:
        return None
    return session.get(Subscriber, subscriber_id)
