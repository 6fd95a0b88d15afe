"""The confirmation page of the double opt-in.

The link shows a page with a button and the POST activates the subscription, so a mail
filter that opens every link in a message cannot subscribe someone who never asked.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from bulletin.app.links import InvalidToken
from bulletin.app.optin import confirm_by_token
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

    def work(session: Session) -> tuple[LinkedSubscriber, bool]:
        subscriber, changed = confirm_by_token(session, settings_of(request), token, ip=ip, user_agent=agent)
        return describe(request, subscriber), changed

    try:
        subscriber, _changed = await write(request, work)
    except InvalidToken as exc:
        return link_error(request, exc, "confirm", text)
    return render(request, "confirm.html", {"subscriber": subscriber, "done": True}, text=text)
