"""What the pages reached from a signed link share: reading the token and the error page."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from bulletin.app.links import InvalidToken, Purpose, subscriber_for_token, subscriber_url
from bulletin.i18n import PageText
from bulletin.models import Subscriber, SubscriberStatus
from bulletin.web.pages import CSRF_FIELD, csrf_valid, page_language, read, render, settings_of


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
        preferences_url=local_path(
            subscriber_url(settings, "preferences", subscriber.id, subscriber.email, subscriber.link_nonce)
        ),
        unsubscribe_url=local_path(
            subscriber_url(settings, "unsubscribe", subscriber.id, subscriber.email, subscriber.link_nonce)
        ),
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


@dataclass(frozen=True)
class PostedLink:
    """A form posted to a signed link that passed the token and CSRF checks."""

    subscriber: LinkedSubscriber
    text: PageText
    form: FormData


async def load_posted(
    request: Request, purpose: Purpose, *, csrf_exempt: Callable[[FormData], bool] | None = None
) -> PostedLink | Response:
    """Check the link's token, then the form's CSRF token (unless ``csrf_exempt`` says the form needs none).

    Returns the refusal page to send back when a check fails.
    """
    form = await request.form()
    found = await load(request, purpose)
    if isinstance(found, InvalidToken):
        return link_error(request, found, purpose)
    text = page_language(request, found.language)
    exempt = csrf_exempt is not None and csrf_exempt(form)
    if not exempt and not csrf_valid(request, form.get(CSRF_FIELD)):
        return render(request, "form_expired.html", {}, text=text, status_code=403)
    return PostedLink(subscriber=found, text=text, form=form)
