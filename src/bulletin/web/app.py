"""The Starlette application: routes, sessions, security headers and error pages."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bulletin.app.links import PATHS
from bulletin.config import Settings
from bulletin.db import engine_for
from bulletin.errors import BulletinError, Conflict, NotFound
from bulletin.web.headers import SecurityHeadersMiddleware
from bulletin.web.language import N_
from bulletin.web.logs import redact_path
from bulletin.web.pages import make_environment, page_language, render
from bulletin.web.views import archive, confirm, editions, preferences, progress, staff_login, subscribe, unsubscribe
from bulletin.web.views import edition as edition_view

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
SESSION_COOKIE = "bulletin_session"
# Forms are small; nothing legitimate posts more than this.
MAX_BODY_BYTES = 256 * 1024


def session_secret(settings: Settings) -> str:
    """A key for session cookies derived from the link key, so one secret serves both uses."""
    return hmac.new(settings.secret_key.encode(), b"bulletin web session", hashlib.sha256).hexdigest()


def _token_route(purpose: str) -> str:
    return PATHS[purpose] + "{token:str}"  # type: ignore[index]


def routes() -> list[Route | Mount]:
    return [
        Route("/", subscribe.subscribe_page, methods=["GET"]),
        Route("/subscribe", subscribe.subscribe_page, methods=["GET"]),
        Route("/subscribe", subscribe.subscribe_submit, methods=["POST"]),
        Route("/subscribe/sent", subscribe.subscribe_sent, methods=["GET"]),
        Route(_token_route("confirm"), confirm.confirm_page, methods=["GET"]),
        Route(_token_route("confirm"), confirm.confirm_submit, methods=["POST"]),
        Route(_token_route("preferences"), preferences.preferences_page, methods=["GET"]),
        Route(_token_route("preferences"), preferences.preferences_submit, methods=["POST"]),
        Route(_token_route("unsubscribe"), unsubscribe.unsubscribe_page, methods=["GET"]),
        Route(_token_route("unsubscribe"), unsubscribe.unsubscribe_submit, methods=["POST"]),
        Route("/staff", lambda request: RedirectResponse("/staff/", status_code=308), methods=["GET"]),
        Route("/staff/login", staff_login.login_page, methods=["GET"]),
        Route("/staff/login", staff_login.login_submit, methods=["POST"]),
        Route("/staff/logout", staff_login.logout, methods=["POST"]),
        Route("/staff/", editions.editions_page, methods=["GET"]),
        Route("/staff/editions/{edition_id:int}", edition_view.edition_page, methods=["GET"]),
        Route(
            "/staff/editions/{edition_id:int}/variants/{variant_id:int}/{part:str}",
            edition_view.variant_frame,
            methods=["GET"],
        ),
        Route("/staff/editions/{edition_id:int}/items", edition_view.arrange_items, methods=["POST"]),
        Route("/staff/editions/{edition_id:int}/render", edition_view.render_variants, methods=["POST"]),
        Route("/staff/editions/{edition_id:int}/status", edition_view.change_status, methods=["POST"]),
        Route("/staff/editions/{edition_id:int}/approve", edition_view.approve, methods=["POST"]),
        Route("/staff/editions/{edition_id:int}/schedule", edition_view.schedule, methods=["POST"]),
        Route("/staff/editions/{edition_id:int}/test-send", edition_view.test_send, methods=["POST"]),
        Route("/staff/editions/{edition_id:int}/progress", progress.progress_page, methods=["GET"]),
        Route("/archive", archive.archive_redirect, methods=["GET"]),
        Route("/archive/", archive.index, methods=["GET"]),
        Route("/archive/{lang:str}.atom", archive.feed, methods=["GET"]),
        Route("/archive/items/{item_id:int}", archive.item, methods=["GET"]),
        Route("/archive/{edition_id:int}/{lang:str}", archive.edition, methods=["GET"]),
        Route("/archive/{edition_id:int}/{lang:str}/email", archive.web_version, methods=["GET"]),
        Route("/healthz", lambda request: PlainTextResponse("ok"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def _error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    text = page_language(request) if "session" in request.scope else None
    if text is None:
        return PlainTextResponse(message, status_code=status_code)
    return render(
        request,
        "error.html",
        {"title": text.plain(title), "message": text.plain(message)},
        text=text,
        status_code=status_code,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_page(request, 404, N_("Page not found"), N_("There is no page at this address."))
    if exc.status_code == 405:
        return _error_page(request, 405, N_("Not allowed"), N_("This page cannot be used this way."))
    if exc.status_code == 413:
        return _error_page(request, 413, N_("Too large"), N_("What was sent is too large."))
    return _error_page(request, exc.status_code, N_("Error"), N_("The page could not be shown."))


async def domain_error(request: Request, exc: Exception) -> Response:
    """A BulletinError that escaped a page: its one line, never a traceback."""
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    text = page_language(request)
    return render(request, "error.html", {"title": text.plain("Error"), "message": str(exc)}, status_code=status)


async def server_error(request: Request, exc: Exception) -> Response:
    log.error("error on %s %s", request.method, redact_path(request.url.path), exc_info=exc)
    return _error_page(
        request, 500, N_("Something went wrong"), N_("The page could not be shown. Please try again in a moment.")
    )


def create_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    """The web application for these settings; it opens its own engine unless one is given."""
    owns_engine = engine is None
    database = engine if engine is not None else engine_for(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if owns_engine:
            database.dispose()

    https = settings.web.base_url.startswith("https://")
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(SecurityHeadersMiddleware, https=https),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(settings),
                session_cookie=SESSION_COOKIE,
                max_age=settings.web.session_hours * 3600,
                same_site="lax",
                # Secure cookies need https; a plain-http base URL is a local test or development setup.
                https_only=https,
            ),
        ],
        exception_handlers={
            HTTPException: http_error,
            BulletinError: domain_error,
            Exception: server_error,
        },
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.settings = settings
    app.state.engine = database
    app.state.jinja = make_environment(settings.schedule.timezone)
    # How a slowed-down login waits; tests put a recorder here instead of waiting.
    app.state.sleep = asyncio.sleep
    return app
