"""The subscribe page: a form that starts the double opt-in."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

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


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


def posting_site(request: Request) -> str | None:
    """The origin of another site that posted this form; None for our own pages or an unknown origin.

    The Origin header is used, else the Referer's origin. Our pages send neither (or "null"),
    because they ask for no referrer: such posts must carry the form's CSRF token.
    """
    settings = settings_of(request)
    origin = request.headers.get("origin", "").strip().lower()
    if not origin or origin == "null":
        origin = _origin_of(request.headers.get("referer", "")) or ""
    if not origin:
        return None
    own = {_origin_of(settings.web.base_url), _origin_of(str(request.base_url))}
    return None if origin.rstrip("/") in own else origin.rstrip("/")


def embed_allowed(request: Request, origin: str) -> bool:
    allowed = {entry.rstrip("/").lower() for entry in settings_of(request).web.embed_origins}
    return origin in allowed


async def subscribe_submit(request: Request) -> Response:
    """POST /subscribe: check the form, record the request, mail the confirmation after answering.

    The form of ``bulletin web snippet`` posts here from the sites of ``web.embed_origins``: those
    posts carry no CSRF token (the site is the check); posts from any other site are refused.
    """
    settings = settings_of(request)
    text = page_language(request)
    form = await request.form()
    values = _values(form, text)
    site = posting_site(request)
    if site is not None and not embed_allowed(request, site):
        return render(
            request,
            "error.html",
            {
                "title": text.plain("Form refused"),
                "message": text.plain("This form cannot be sent from another site: please use our subscription page."),
            },
            text=text,
            status_code=403,
        )
    if site is None and not csrf_valid(request, form.get(CSRF_FIELD)):
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
