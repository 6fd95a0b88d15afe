"""The public archive: index, edition pages, web versions of the bulletins, item pages, Atom feeds.

Every page answers 404 unless its edition went out. Pages carry an ETag, so a visitor's
browser or a feed reader revalidates them for the cost of a hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bulletin.compose import archive
from bulletin.compose.archive_urls import ServerLinks
from bulletin.errors import NotFound
from bulletin.i18n import page_text
from bulletin.web.archive_site import edition_context, index_context, item_context
from bulletin.web.headers import WEB_VERSION_POLICY
from bulletin.web.language import negotiate
from bulletin.web.pages import read, render, settings_of

ATOM_TYPE = "application/atom+xml; charset=utf-8"
T = TypeVar("T")


def _revalidated(request: Request, response: Response, *, vary: str | None = None) -> Response:
    """The response with its ETag and caching headers, or 304 when the client's copy is current."""
    settings = settings_of(request)
    etag = '"' + hashlib.sha256(bytes(response.body)).hexdigest()[:32] + '"'
    # Public pages may be kept, but are checked again on every use: they change when editions go out.
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if vary:
        headers["Vary"] = vary
    if settings.archive.noindex:
        headers["X-Robots-Tag"] = "noindex"
    wanted = [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]
    if etag in wanted or "*" in wanted:
        not_modified = Response(status_code=304, headers=headers)
        # A language chosen with ?lang= is still remembered.
        for name, value in response.raw_headers:
            if name == b"set-cookie":
                not_modified.raw_headers.append((name, value))
        return not_modified
    response.headers.update(headers)
    return response


async def _public(request: Request, work: Callable[[Session], T]) -> T:
    """``work`` in a read transaction; what is not public is the usual "page not found"."""
    try:
        return await read(request, work)
    except NotFound:
        raise HTTPException(404) from None


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not raw.isdigit() or len(raw) > 6:
        raise HTTPException(404)
    return int(raw)


async def archive_redirect(request: Request) -> Response:
    return RedirectResponse("/archive/", status_code=308)


async def index(request: Request) -> Response:
    """GET /archive/: the sent editions, newest first, in the visitor's language."""
    settings = settings_of(request)
    language = negotiate(request, settings)
    number = _page_number(request)
    page = await _public(request, lambda session: archive.index_page(session, settings, language, number))
    context = index_context(settings, page, ServerLinks())
    response = render(request, "archive/index.html", context, text=page_text(language))
    return _revalidated(request, response, vary="Accept-Language, Cookie")


async def edition(request: Request) -> Response:
    """GET /archive/{edition}/{lang}: a sent edition in one language."""
    settings = settings_of(request)
    edition_id: int = request.path_params["edition_id"]
    language: str = request.path_params["lang"]
    entry = await _public(
        request, lambda session: archive.public_edition_entry(session, settings, edition_id, language)
    )
    context = edition_context(settings, entry, ServerLinks())
    return _revalidated(request, render(request, "archive/edition.html", context, text=page_text(language)))


async def web_version(request: Request) -> Response:
    """GET /archive/{edition}/{lang}/email?topics=...: the bulletin as a variant's readers got it."""
    settings = settings_of(request)
    edition_id: int = request.path_params["edition_id"]
    language: str = request.path_params["lang"]
    topics = request.query_params.get("topics", "")[:1000]
    html = await _public(request, lambda session: archive.web_version(session, settings, edition_id, language, topics))
    if settings.archive.noindex:
        html = html.replace("<head>", '<head><meta name="robots" content="noindex">', 1)
    response = Response(
        html, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": WEB_VERSION_POLICY}
    )
    return _revalidated(request, response)


async def item(request: Request) -> Response:
    """GET /archive/items/{item}: a news item of a sent edition, in full."""
    settings = settings_of(request)
    item_id: int = request.path_params["item_id"]
    page = await _public(request, lambda session: archive.item_page(session, settings, item_id))
    context = item_context(settings, page, ServerLinks())
    return _revalidated(request, render(request, "archive/item.html", context, text=page_text(page.language)))


async def feed(request: Request) -> Response:
    """GET /archive/{lang}.atom: the Atom feed of a language."""
    settings = settings_of(request)
    language: str = request.path_params["lang"]
    if language not in settings.languages:
        raise HTTPException(404)
    entries = await _public(request, lambda session: archive.feed_entries(session, settings, language))
    links = ServerLinks(settings.web.base_url)
    body = archive.atom_feed(settings, language, entries, links, links.feed(language))
    return _revalidated(request, Response(body, media_type=ATOM_TYPE))
