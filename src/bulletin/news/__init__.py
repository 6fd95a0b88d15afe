"""News ingest: plain-text pages, Markdown files and RSS/Atom feeds into one store of news items."""

from bulletin.news.ingest import IngestReport, SourceOutcome, ingest_sources
from bulletin.news.translations import translations_of

__all__ = ["IngestReport", "SourceOutcome", "ingest_sources", "translations_of"]
