"""The web pages: subscription pages for the public and preview/approval pages for staff."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from starlette.applications import Starlette

    from bulletin.config import Settings


def create_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    """Build the ASGI application (imported lazily so plain modules can use ``bulletin.web.ratelimit``)."""
    from bulletin.web.app import create_app as _create_app

    return _create_app(settings, engine)


__all__ = ["create_app"]
