"""The error a source raises when it cannot be read; ingest reports it on one line."""

from __future__ import annotations

from bulletin.errors import InvalidInput


class SourceError(InvalidInput):
    """A source that cannot be ingested: empty, binary, too big, not a feed, unreachable..."""
