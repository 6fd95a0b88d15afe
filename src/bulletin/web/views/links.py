"""What the pages reached from a signed link share: reading the token and the error page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from bulletin.links import InvalidToken, Purpose, subscriber_url
from bulletin.models import Subscriber, SubscriberStatus
from bulletin.web.language import PageText
from bulletin.web.pages import page_language, read, render, settings_of
from bulletin.web.tokens import subscriber_for_token


@dataclass(frozen=True)
class LinkedSubscriber:
    """What a page shows about the subscriber of a valid link (no ORM object leaves the transaction)."""

    id: int
    email: str
    name: str | None
    language: str
    interests: list[str]
    status: SubscriberStatus
    preferences_url: str
    unsubscribe_url: str


def describe(request: Request, subscriber: Subscriber) -> LinkedSubscriber:
    settings = settings_of(request)
    return LinkedSubscriber(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        language=subscriber.language,
        interests=subscriber.interest_list,
        status=subscriber.status,
        preferences_url=local_path(subscriber_url(settings, "preferences", subscriber.id, subscriber.email)),
        unsubscribe_url=local_path(subscriber_url(settings, "unsubscribe", subscriber.id, subscriber.email)),
    )


def local_path(url: str) -> str:
    """The path of one of our absolute links, so pages work whatever host name served them."""
    from urllib.parse import urlsplit

    return urlsplit(url).path


async def load(request: Request, purpose: Purpose) -> LinkedSubscriber | InvalidToken:
    """The subscriber of the link in the path, or the reason it is refused."""
    token = str(request.path_params.get("token", ""))

    def work(session: Session) -> LinkedSubscriber:
        return describe(request, subscriber_for_token(session, settings_of(request), purpose, token))

    try:
        return await read(request, work)
    except InvalidToken as exc:
        return exc


def link_error(request: Request, error: InvalidToken, purpose: Purpose, text: PageText | None = None) -> Response:
    """A clear page for a tampered, truncated or expired link; nothing was changed."""
    text = text or page_language(request)
    expired = error.reason == "expired"
    return render(
        request,
        "link_error.html",
        {"expired": expired, "purpose": purpose},
        text=text,
        status_code=410 if expired else 400,
    )
