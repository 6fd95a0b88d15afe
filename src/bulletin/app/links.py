"""Signed links for subscribers: unsubscribe, preferences and opt-in confirmation.

Tokens are signed with ``BULLETIN_SECRET_KEY`` by itsdangerous (HMAC-SHA256, compared in
constant time) and bound to one subscriber: the id and a digest of the address, so a token
stops working if the address is erased and later subscribed again. Unsubscribe and
preference tokens never expire; confirmation tokens expire after seven days.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.models import Subscriber

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


def email_digest(email: str) -> str:
    """A short digest of the lower-cased address, binding a token to it."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:16]


# Serializers hold no state between calls; building one costs more than signing a token with it.
@functools.lru_cache(maxsize=64)
def _serializer(secret: str, purpose: Purpose) -> URLSafeSerializer | URLSafeTimedSerializer:
    if purpose == "confirm":
        return URLSafeTimedSerializer(secret, salt="bulletin-confirm")
    return URLSafeSerializer(secret, salt=f"bulletin-{purpose}")


def make_token(secret: str, purpose: Purpose, subscriber_id: int, email: str) -> str:
    return str(_serializer(secret, purpose).dumps([subscriber_id, email_digest(email)]))


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
        or len(payload) != 2
        or not isinstance(payload[0], int)
        or not isinstance(payload[1], str)
    ):
        raise InvalidToken("invalid")
    return TokenSubject(subscriber_id=payload[0], email_digest=payload[1])


def token_matches(subject: TokenSubject, subscriber_id: int, email: str) -> bool:
    return subject.subscriber_id == subscriber_id and subject.email_digest == email_digest(email)


def subscriber_url(settings: Settings, purpose: Purpose, subscriber_id: int, email: str) -> str:
    """The absolute URL of a subscriber's signed page."""
    token = make_token(settings.secret_key, purpose, subscriber_id, email)
    return settings.web.base_url.rstrip("/") + PATHS[purpose] + token


# A token longer than this is not one of ours; refuse it before any work.
MAX_TOKEN_LENGTH = 400


def subscriber_for_token(session: Session, settings: Settings, purpose: Purpose, token: str) -> Subscriber:
    """The subscriber a valid token names; InvalidToken if tampered, truncated, expired or stale."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("invalid")
    subject = read_token(settings.secret_key, purpose, token)
    subscriber = session.get(Subscriber, subject.subscriber_id)
    if subscriber is None or not token_matches(subject, subscriber.id, subscriber.email):
        raise InvalidToken("invalid")
    return subscriber
