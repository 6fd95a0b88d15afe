"""From a signed link to the subscriber it names."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.links import InvalidToken, Purpose, read_token, token_matches
from bulletin.models import Subscriber

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
