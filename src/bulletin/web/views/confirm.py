"""The confirmation page of the double opt-in.

The link shows a page with a button and the POST activates the subscription, so a mail
filter that opens every link in a message cannot subscribe someone who never asked.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from bulletin.app.links import InvalidToken
from bulletin.app.optin import Confirmation, OptinEmail, confirm_by_token, read_confirmation, welcome_email
from bulletin.models import SubscriberStatus
from bulletin.mta.notices import send_optin_email
from bulletin.web.pages import (
    CSRF_FIELD,
    client_ip,
    csrf_valid,
    page_language,
    read,
    render,
    settings_of,
    user_agent,
    write,
)
from bulletin.web.views.links import LinkedSubscriber, describe, link_error


def _shown(request: Request, found: Confirmation) -> LinkedSubscriber:
    """The page's view of a confirmation: waiting ones show as pending, whatever is stored."""
    if found.subscriber is None:
        return LinkedSubscriber(
            id=0,
            email=found.email,
            name=None,
            language=found.language,
            interests=found.interests,
            status=SubscriberStatus.PENDING,
            preferences_url="",
            unsubscribe_url="",
        )
    shown = describe(request, found.subscriber)
    if found.waiting:
        shown = dataclasses.replace(
            shown, status=SubscriberStatus.PENDING, language=found.language, interests=found.interests
        )
    return shown


async def _load(request: Request) -> LinkedSubscriber | InvalidToken:
    token = str(request.path_params.get("token", ""))
    settings = settings_of(request)
    try:
        return await read(request, lambda session: _shown(request, read_confirmation(session, settings, token)))
    except InvalidToken as exc:
        return exc


async def confirm_page(request: Request) -> Response:
    """GET /confirm/{token}."""
    found = await _load(request)
    if isinstance(found, InvalidToken):
        return link_error(request, found, "confirm")
    text = page_language(request, found.language)
    return render(request, "confirm.html", {"subscriber": found, "done": False}, text=text)


async def confirm_submit(request: Request) -> Response:
    """POST /confirm/{token}: activate and record the consent (time, IP address, browser)."""
    token = str(request.path_params["token"])
    form = await request.form()
    found = await _load(request)
    if isinstance(found, InvalidToken):
        return link_error(request, found, "confirm")
    text = page_language(request, found.language)
    if not csrf_valid(request, form.get(CSRF_FIELD)):
        return render(request, "form_expired.html", {}, text=text, status_code=403)
    ip = client_ip(request)
    agent = user_agent(request)

    settings = settings_of(request)

    def work(session: Session) -> tuple[LinkedSubscriber, OptinEmail | None]:
        subscriber, changed = confirm_by_token(session, settings, token, ip=ip, user_agent=agent)
        if subscriber is None:
            return _shown(request, read_confirmation(session, settings, token)), None
        return describe(request, subscriber), welcome_email(settings, subscriber) if changed else None

    try:
        subscriber, welcome = await write(request, work)
    except InvalidToken as exc:
        return link_error(request, exc, "confirm", text)
    # The welcome email goes out after the answer, as the other opt-in emails do.
    background = BackgroundTask(send_optin_email, settings, welcome) if welcome is not None else None
    response = render(request, "confirm.html", {"subscriber": subscriber, "done": True}, text=text)
    response.background = background
    return response
