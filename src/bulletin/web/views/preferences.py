"""The preferences page, from the signed link in every bulletin: language, topics, name, or leaving."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bulletin.app.links import InvalidToken, subscriber_for_token
from bulletin.app.optin import resubscribe, unsubscribe
from bulletin.app.subscribers import update_subscriber
from bulletin.i18n import PageText
from bulletin.models import SubscriberStatus
from bulletin.web.pages import (
    client_ip,
    flash,
    page_language,
    render,
    settings_of,
    user_agent,
    write,
)
from bulletin.web.views.links import LinkedSubscriber, describe, link_error, load, load_posted
from bulletin.web.views.subscribe import interest_choices

ACTIONS = ("save", "unsubscribe", "resubscribe")


def _page(
    request: Request,
    text: PageText,
    subscriber: LinkedSubscriber,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    values = values or {"language": subscriber.language, "interests": subscriber.interests, "name": subscriber.name}
    return render(
        request,
        "preferences.html",
        {
            "subscriber": subscriber,
            "values": values,
            "errors": errors or {},
            "interests": interest_choices(request, text, list(values["interests"])),
        },
        text=text,
        status_code=status_code,
    )


async def preferences_page(request: Request) -> Response:
    """GET /preferences/{token}."""
    found = await load(request, "preferences")
    if isinstance(found, InvalidToken):
        return link_error(request, found, "preferences")
    return _page(request, page_language(request, found.language), found)


async def preferences_submit(request: Request) -> Response:
    """POST /preferences/{token}: save, unsubscribe or subscribe again."""
    settings = settings_of(request)
    token = str(request.path_params["token"])
    posted = await load_posted(request, "preferences")
    if isinstance(posted, Response):
        return posted
    found, text, form = posted.subscriber, posted.text, posted.form
    action = form.get("action", "save")
    if action not in ACTIONS:
        action = "save"

    language = str(form.get("language", ""))
    interests = [value for value in form.getlist("interests") if isinstance(value, str)]
    name = str(form.get("name", ""))[:200]
    if action == "save":
        errors: dict[str, str] = {}
        if language not in settings.languages:
            errors["language"] = text.plain("Choose one of the languages offered.")
        if any(key not in settings.interest_keys for key in interests):
            errors["interests"] = text.plain("Choose among the topics offered.")
        if errors:
            values = {"language": language, "interests": interests, "name": name}
            return _page(request, text, found, values, errors, status_code=400)

    ip = client_ip(request)
    agent = user_agent(request)

    def work(session: Session) -> tuple[LinkedSubscriber, bool]:
        subscriber = subscriber_for_token(session, settings, "preferences", token)
        if action == "unsubscribe":
            changed = unsubscribe(session, subscriber, via="the preferences page")
        elif action == "resubscribe":
            changed = resubscribe(session, subscriber, ip=ip, user_agent=agent)
        else:
            changed = bool(
                update_subscriber(
                    session, settings, subscriber, actor="web", language=language, interests=interests, name=name
                )
            )
        return describe(request, subscriber), changed

    subscriber, _changed = await write(request, work)
    if action == "save":
        # The page follows the language just chosen.
        request.session["lang"] = subscriber.language
        text = page_language(request, subscriber.language)
        flash(request, text.plain("Your preferences are saved."), "success")
    elif action == "resubscribe" and subscriber.status == SubscriberStatus.ACTIVE:
        flash(request, text.plain("Welcome back: you are subscribed again."), "success")
    elif action == "unsubscribe":
        return render(request, "unsubscribed.html", {"subscriber": subscriber, "one_click": False}, text=text)
    return RedirectResponse(request.url.path, status_code=303)
