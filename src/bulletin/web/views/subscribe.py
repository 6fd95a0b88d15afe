"""The subscribe page: a form that starts the double opt-in."""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bulletin.app.optin import OptinEmail, RateLimited, request_subscription
from bulletin.app.subscribers import clean_name, normalize_email
from bulletin.errors import InvalidInput
from bulletin.i18n import PageText
from bulletin.mta.notices import send_optin_email
from bulletin.web.pages import CSRF_FIELD, client_ip, csrf_valid, page_language, render, settings_of, user_agent, write

# A field people never see; a form that fills it in was filled in by a robot.
HONEYPOT_FIELD = "website"


def interest_choices(request: Request, text: PageText, selected: list[str]) -> list[dict[str, Any]]:
    settings = settings_of(request)
    return [
        {
            "key": interest.key,
            "label": interest.labels.get(text.language)
            or interest.labels.get(settings.default_language)
            or interest.key,
            "checked": interest.key in selected,
        }
        for interest in settings.interests
    ]


def _form_page(
    request: Request,
    text: PageText,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "subscribe.html",
        {
            "values": values,
            "errors": errors,
            "interests": interest_choices(request, text, values.get("interests", [])),
            "honeypot": HONEYPOT_FIELD,
        },
        text=text,
        status_code=status_code,
    )


async def subscribe_page(request: Request) -> Response:
    """GET /subscribe (and /): the form."""
    text = page_language(request)
    return _form_page(request, text, {"email": "", "name": "", "language": text.language, "interests": []}, {})


def _values(form: FormData, text: PageText) -> dict[str, Any]:
    def field(name: str) -> str:
        value = form.get(name, "")
        return value if isinstance(value, str) else ""

    return {
        "email": field("email").strip()[:320],
        "name": field("name").strip()[:400],
        "language": field("language") or text.language,
        "interests": [value for value in form.getlist("interests") if isinstance(value, str)],
    }


def _check(request: Request, text: PageText, values: dict[str, Any]) -> dict[str, str]:
    settings = settings_of(request)
    errors: dict[str, str] = {}
    try:
        normalize_email(values["email"])
    except InvalidInput:
        errors["email"] = text.plain("Enter a valid email address, like name@example.org.")
    try:
        clean_name(values["name"])
    except InvalidInput:
        errors["name"] = text.plain("Write your name as plain text, without <, > or @, in at most 100 characters.")
    if values["language"] not in settings.languages:
        errors["language"] = text.plain("Choose one of the languages offered.")
    if any(key not in settings.interest_keys for key in values["interests"]):
        errors["interests"] = text.plain("Choose among the topics offered.")
    return errors


async def subscribe_submit(request: Request) -> Response:
    """POST /subscribe: check the form, record the request, mail the confirmation after answering."""
    settings = settings_of(request)
    text = page_language(request)
    form = await request.form()
    values = _values(form, text)
    if not csrf_valid(request, form.get(CSRF_FIELD)):
        errors = {"form": text.plain("This form had expired. Please check your answers and send it again.")}
        return _form_page(request, text, values, errors, status_code=403)
    errors = _check(request, text, values)
    if errors:
        return _form_page(request, text, values, errors, status_code=400)

    plan: OptinEmail | None = None
    if not form.get(HONEYPOT_FIELD):
        ip = client_ip(request)
        agent = user_agent(request)
        try:
            plan = await write(
                request,
                lambda session: request_subscription(
                    session,
                    settings,
                    email=values["email"],
                    language=values["language"],
                    interests=values["interests"],
                    name=values["name"] or None,
                    ip=ip,
                    user_agent=agent,
                ),
            )
        except RateLimited:
            return render(
                request,
                "error.html",
                {
                    "title": text.plain("Too many requests"),
                    "message": text.plain(
                        "We received too many subscription requests from your network. Please try again in an hour."
                    ),
                },
                text=text,
                status_code=429,
                headers={"Retry-After": "3600"},
            )
    request.session["sent_to"] = values["email"]
    # The email goes out after the answer, so every address gets the same answer just as fast.
    background = BackgroundTask(send_optin_email, settings, plan) if plan is not None else None
    return RedirectResponse("/subscribe/sent", status_code=303, background=background)


async def subscribe_sent(request: Request) -> Response:
    """GET /subscribe/sent: the same answer whatever the address was."""
    address = request.session.get("sent_to")
    return render(request, "subscribe_sent.html", {"address": address if isinstance(address, str) else None})
