"""The confirmation page of the double opt-in.

The link shows a page with a button and the POST activates the subscription, so a mail
filter that opens every link in a message cannot subscribe someone who never asked.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from bulletin.app.links import InvalidToken
from bulletin.app.optin import OptinEmail, confirm_by_token, welcome_email
from bulletin.mta.notices import send_optin_email
from bulletin.web.pages import client_ip, page_language, render, settings_of, user_agent, write
from bulletin.web.views.links import LinkedSubscriber, describe, link_error, load, load_posted


async def confirm_page(request: Request) -> Response:
    """GET /confirm/{token}."""
    found = await load(request, "confirm")
    if isinstance(found, InvalidToken):
        return link_error(request, found, "confirm")
    text = page_language(request, found.language)
    return render(request, "confirm.html", {"subscriber": found, "done": False}, text=text)


async def confirm_submit(request: Request) -> Response:
    """POST /confirm/{token}: activate and record the consent (time, IP address, browser)."""
    token = str(request.path_params["token"])
    posted = await load_posted(request, "confirm")
    if isinstance(posted, Response):
        return posted
    text = posted.text
    ip = client_ip(request)
    agent = user_agent(request)

    settings = settings_of(request)

    def work(session: Session) -> tuple[LinkedSubscriber, OptinEmail | None]:
        subscriber, changed = confirm_by_token(session, settings, token, ip=ip, user_agent=agent)
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
