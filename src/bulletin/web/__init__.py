"""The web edge: public subscription pages and staff preview and approval pages (Starlette).

Handlers parse the request, own one transaction and call functions of the core folders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from starlette.applications import Starlette

    from bulletin.config import Settings


def create_app(settings: Settings, engine: Engine | None = None) -> Starlette:
    """Build the ASGI application (its modules load on first use: only `bulletin serve` needs them)."""
    # Loaded on first use: only `bulletin serve` and the tests need Starlette and the page modules.
    from bulletin.web.app import create_app as _create_app

    return _create_app(settings, engine)


__all__ = ["create_app"]
