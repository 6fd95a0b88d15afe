"""Rendering pages: the Jinja2 environment, the common context and database calls from handlers."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import NoMatchFound, Route

from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.i18n import PageText, format_local, page_text
from bulletin.web.language import language_name, negotiate

TEMPLATES_DIR = Path(__file__).parent / "templates"
CSRF_FIELD = "csrf_token"
T = TypeVar("T")


def make_environment(timezone: str = "UTC") -> jinja2.Environment:
    def local_time(moment: datetime | None) -> str:
        return format_local(moment, timezone) if moment else ""

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["kib"] = lambda size: f"{size / 1024:.1f} KiB"
    env.filters["local"] = local_time
    return env


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def client_ip(request: Request) -> str:
    """The client address as uvicorn reports it (it honours X-Forwarded-For from trusted proxies only)."""
    return request.client.host if request.client else "unknown"


def user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:400]


async def write(request: Request, work: Callable[[Session], T]) -> T:
    """Run ``work`` in one write transaction, off the event loop."""

    def run() -> T:
        with transaction(engine_of(request)) as session:
            return work(session)

    return await run_in_threadpool(run)


async def read(request: Request, work: Callable[[Session], T]) -> T:
    """Run ``work`` in a read-only transaction, off the event loop."""

    def run() -> T:
        with reading(engine_of(request)) as session:
            return work(session)

    return await run_in_threadpool(run)


# ---------------------------------------------------------------------------
# CSRF: a random token kept in the signed session cookie and repeated in every form.


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_valid(request: Request, submitted: object) -> bool:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


# ---------------------------------------------------------------------------
# Flash messages, shown once on the next page.


def flash(request: Request, message: str, kind: str = "info") -> None:
    messages = list(request.session.get("flash", []))
    messages.append([kind, message])
    request.session["flash"] = messages[-5:]


def pop_flashes(request: Request) -> list[tuple[str, str]]:
    if "flash" not in request.session:
        return []
    messages = request.session.pop("flash")
    return [(str(kind), str(text)) for kind, text in messages]


# ---------------------------------------------------------------------------


def page_path(request: Request) -> str:
    """This page's path rebuilt from its route, or ``/`` when no route matched (a 404).

    Never the raw request path: ``GET //evil.example/x`` must not produce a link to another site.
    """
    route = request.scope.get("route")
    if isinstance(route, Route) and route.name:
        try:
            return str(route.url_path_for(route.name, **request.path_params))
        except (NoMatchFound, AssertionError, ValueError):
            return "/"
    return "/"


def language_links(request: Request, settings: Settings, current: str) -> list[dict[str, Any]]:
    """The language switcher: links to this page in every language."""
    links = []
    path = page_path(request)
    for code in settings.languages:
        query = {key: value for key, value in request.query_params.items() if key != "lang"}
        query["lang"] = code
        links.append(
            {
                "code": code,
                "name": language_name(code),
                "url": path + "?" + urlencode(query),
                "current": code == current,
            }
        )
    return links


def page_language(request: Request, subscriber_language: str | None = None) -> PageText:
    return page_text(negotiate(request, settings_of(request), subscriber_language))


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    text: PageText | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render a page in the request's language (or ``text``'s)."""
    settings = settings_of(request)
    text = text or page_language(request)
    env: jinja2.Environment = request.app.state.jinja
    values: dict[str, Any] = {
        "request": request,
        "settings": settings,
        "organisation": settings.organisation,
        "languages": language_links(request, settings, text.language),
        "language_name": language_name,
        "csrf_field": lambda: Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, csrf_token(request)
        ),
        "flashes": pop_flashes(request) if "session" in request.scope else [],
        "staff": None,
        **text.template_functions(),
    }
    values.update(context or {})
    body = env.get_template(template).render(values)
    return HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))
