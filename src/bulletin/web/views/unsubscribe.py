"""Unsubscribing: a page with a button, and the RFC 8058 one-click endpoint on the same URL.

A GET never unsubscribes (link scanners open every link). A POST whose body is
``List-Unsubscribe=One-Click`` comes from a mailbox provider: it needs no cookie and no CSRF
token, takes effect at once and is answered 200 without a redirect.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from bulletin.app.links import InvalidToken, subscriber_for_token
from bulletin.app.optin import unsubscribe
from bulletin.web.pages import page_language, render, settings_of, write
from bulletin.web.views.links import LinkedSubscriber, describe, link_error, load, load_posted

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def is_one_click(form: FormData) -> bool:
    """A mailbox provider's RFC 8058 request: it carries no CSRF token and needs none."""
    return form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE


async def unsubscribe_page(request: Request) -> Response:
    """GET /unsubscribe/{token}: a page with a button, changing nothing."""
    found = await load(request, "unsubscribe")
    if isinstance(found, InvalidToken):
        return link_error(request, found, "unsubscribe")
    text = page_language(request, found.language)
    return render(request, "unsubscribe.html", {"subscriber": found}, text=text)


async def unsubscribe_submit(request: Request) -> Response:
    """POST /unsubscribe/{token}: the button of the page, or a mailbox provider's one-click request."""
    settings = settings_of(request)
    token = str(request.path_params["token"])
    posted = await load_posted(request, "unsubscribe", csrf_exempt=is_one_click)
    if isinstance(posted, Response):
        return posted
    text = posted.text
    one_click = is_one_click(posted.form)

    via = "one-click (RFC 8058)" if one_click else "the unsubscribe page"

    def work(session: Session) -> LinkedSubscriber:
        subscriber = subscriber_for_token(session, settings, "unsubscribe", token)
        unsubscribe(session, subscriber, via=via)
        return describe(request, subscriber)

    subscriber = await write(request, work)
    return render(request, "unsubscribed.html", {"subscriber": subscriber, "one_click": one_click}, text=text)
