"""Ingest news sources (files, folders, feed URLs): each source read, settled and stored in its own
transaction, so one bad source is reported on one line and the others still go in."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import BulletinError, InvalidInput
from bulletin.models import FeedState, utcnow
from bulletin.news.corrections import apply_corrections, load_corrections
from bulletin.news.draft import Draft, clean_blocks, clip, optional_line, plain_text, single_line, summary_from_body
from bulletin.news.errors import SourceError
from bulletin.news.feeds import fetch_feed, parse_feed
from bulletin.news.html_pages import read_html_page
from bulletin.news.language import detect_language, normalise_language
from bulletin.news.markdown import read_markdown
from bulletin.news.source_files import folder_news_files, read_source_file
from bulletin.news.store import ItemFields, stored_ids, upsert_items
from bulletin.news.text_dates import find_text_date, local_day, text_date_moment
from bulletin.news.text_pages import read_text_page
from bulletin.news.topics import map_source_topics, strongest_topics, topic_evidence, topics_key
from bulletin.paths import shown

log = logging.getLogger(__name__)

KINDS_BY_SUFFIX = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".xml": "feed",
    ".rss": "feed",
    ".atom": "feed",
    ".html": "html",
    ".htm": "html",
}


@dataclass
class SourceOutcome:
    """What happened to one source: counts, the items it touched, and why it failed if it did."""

    source: str
    kind: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)
    # Items added or updated by this source, for the report shown to staff.
    touched_ids: list[int] = field(default_factory=list)
    # With dry_run: what would be stored, and whether each item is already stored (its id).
    previews: list[tuple[ItemFields, int | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class IngestReport:
    """Per-source outcomes of one ingest call, and their totals."""

    outcomes: list[SourceOutcome] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(o.added for o in self.outcomes)

    @property
    def updated(self) -> int:
        return sum(o.updated for o in self.outcomes)

    @property
    def unchanged(self) -> int:
        return sum(o.unchanged for o in self.outcomes)

    @property
    def rejected(self) -> int:
        return sum(o.rejected for o in self.outcomes)

    @property
    def failed(self) -> list[SourceOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def item_ids(self) -> list[int]:
        return [item_id for o in self.outcomes for item_id in o.item_ids]


@dataclass(frozen=True)
class IngestOptions:
    """What the person ingesting said about every item: language, date, topics, the page's own date."""

    language: str | None = None
    date: datetime | None = None
    topics: tuple[str, ...] = ()
    # The date a page was published, for the year of dates its text gives without one.
    as_of: datetime | None = None
    dry_run: bool = False


def ingest_sources(
    engine: Engine,
    settings: Settings,
    sources: list[str],
    *,
    lang: str | None = None,
    date: datetime | None = None,
    topics: list[str] | None = None,
    as_of: datetime | None = None,
    dry_run: bool = False,
) -> IngestReport:
    """Read every source into the news store; a failing source is reported and does not stop the others.

    ``lang`` is the language of items whose source does not say; ``date`` replaces every item's
    date; ``topics`` are added to every item; ``as_of`` is the pages' own date (else the file's
    modification time). With ``dry_run`` nothing is written: each outcome lists its previews.
    """
    if not sources:
        raise InvalidInput("give at least one file, folder or feed URL to ingest")
    if lang is not None and lang not in settings.languages:
        raise InvalidInput(f"unknown language {lang!r} (languages are {', '.join(settings.languages)})")
    for key in topics or []:
        if key not in settings.interest_keys:
            raise InvalidInput(f"unknown topic {key!r} (topics are {', '.join(settings.interest_keys)})")
    if date is not None and date.tzinfo is None:
        raise InvalidInput("the --date must carry a time zone")
    if as_of is not None and as_of.tzinfo is None:
        raise InvalidInput("the --as-of date must carry a time zone")
    options = IngestOptions(lang, date.astimezone(UTC) if date else None, tuple(topics or ()), as_of, dry_run=dry_run)
    report = IngestReport()
    for source, kind in _expand(sources, report):
        report.outcomes.append(_ingest_one(engine, settings, source, kind, options))
    return report


def _expand(sources: list[str], report: IngestReport) -> Iterator[tuple[str, str]]:
    """(source, kind) for each URL and file; folders give their news files, in name order."""
    for source in sources:
        if source.lower().startswith(("http://", "https://")):
            yield source, "feed-url"
            continue
        path = Path(source).expanduser()
        try:
            is_dir, exists = path.is_dir(), path.exists()
        except OSError as exc:
            report.outcomes.append(SourceOutcome(shown(source), "file", error=f"cannot read: {exc.strerror or exc}"))
            continue
        if is_dir:
            files, refused = folder_news_files(path, KINDS_BY_SUFFIX)
            for refused_path, reason in refused:
                report.outcomes.append(SourceOutcome(str(refused_path), "file", error=reason))
            if not files and not refused:
                report.outcomes.append(
                    SourceOutcome(source, "folder", error=f"no news files (.txt, .md, .xml, .html) in {source}")
                )
            for file in files:
                yield str(file), ""
        elif exists:
            yield str(path), ""
        else:
            report.outcomes.append(SourceOutcome(source, "file", error="no such file or folder"))


def _ingest_one(engine: Engine, settings: Settings, source: str, kind: str, options: IngestOptions) -> SourceOutcome:
    outcome = SourceOutcome(source, kind or "file")
    try:
        if kind == "feed-url":
            _ingest_url(engine, settings, source, options, outcome)
        else:
            _ingest_file(engine, settings, Path(source), options, outcome)
    except BulletinError as exc:
        outcome.error = str(exc)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        outcome.error = f"database error, nothing stored from this source: {reason}"
    except Exception as exc:
        # A bug in a reader must not lose the other sources; the log keeps the traceback.
        log.exception("ingesting %s failed", source)
        outcome.error = f"unexpected error, nothing stored from this source: {type(exc).__name__}: {exc}"
    if outcome.error:
        outcome.added = outcome.updated = outcome.unchanged = 0
        outcome.item_ids = []
        outcome.touched_ids = []
    return outcome


def _read_file(path: Path, max_bytes: int) -> tuple[bytes, str]:
    """The bytes of a file and its text; SourceError when it is too big, empty, binary or undecodable."""
    data = read_source_file(path, max_bytes)
    if not data.strip():
        raise SourceError("the file is empty")
    if b"\x00" in data[:65536]:
        raise SourceError("the file is binary, not text")
    try:
        return data, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    text = data.decode("cp1252", errors="replace")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t\f")
    if "\ufffd" in text or controls > len(text) / 100:
        raise SourceError("the file is binary or not in a known text encoding (save it as UTF-8)")
    return data, text


def _kind_of(path: Path, text: str) -> str:
    kind = KINDS_BY_SUFFIX.get(path.suffix.lower())
    if kind:
        return kind
    head = text.lstrip()[:200].lower()
    if head.startswith(("<?xml", "<rss", "<feed")):
        return "feed"
    if head.startswith(("<!doctype html", "<html")):
        return "html"
    if head.startswith("---"):
        return "markdown"
    return "text"


def _ingest_file(
    engine: Engine, settings: Settings, path: Path, options: IngestOptions, outcome: SourceOutcome
) -> None:
    data, text = _read_file(path, settings.ingest.max_bytes)
    kind = _kind_of(path, text)
    outcome.kind = kind
    source = str(path.resolve())
    timezone = settings.schedule.timezone
    if kind == "feed":
        # The raw bytes: the XML declaration names the encoding.
        drafts = parse_feed(data, source, languages=settings.languages)
    elif kind == "markdown":
        drafts = [read_markdown(text, source, timezone=timezone)]
    elif kind == "html":
        drafts = [read_html_page(text, source, timezone=timezone)]
    else:
        drafts = read_text_page(text, source, timezone)
    with reading(engine) as session:
        corrections = load_corrections(session, source)
    if corrections:
        drafts, notes = apply_corrections(drafts, corrections)
        outcome.notes.extend(notes)
    _store(engine, settings, source, kind, drafts, options, (file_time(path), "mtime"), outcome)


def file_time(path: Path) -> datetime:
    """The modification time of a file, to the second: the date of a page that gives none."""
    return datetime.fromtimestamp(int(path.stat().st_mtime), UTC)


def _ingest_url(engine: Engine, settings: Settings, url: str, options: IngestOptions, outcome: SourceOutcome) -> None:
    # Validators are read, the request made and the items written in separate steps:
    # no transaction is held open across the HTTP request.
    with reading(engine) as session:
        state = session.get(FeedState, url)
        etag, last_modified = (state.etag, state.last_modified) if state else (None, None)
    fetched = fetch_feed(
        url,
        etag=etag,
        last_modified=last_modified,
        timeout=settings.ingest.timeout,
        max_bytes=settings.ingest.max_bytes,
    )
    if fetched.not_modified:
        outcome.notes.append("not modified since the last fetch (HTTP 304)")
        if not options.dry_run:
            with transaction(engine) as session:
                _remember_feed(session, url, fetched.etag, fetched.last_modified)
        return
    assert fetched.body is not None
    if not fetched.body.strip():
        raise SourceError("the server sent an empty document")
    drafts = parse_feed(fetched.body, url, languages=settings.languages)
    _store(
        engine,
        settings,
        url,
        "feed",
        drafts,
        options,
        (utcnow(), "fetched"),
        outcome,
        feed_state=(fetched.etag, fetched.last_modified),
    )


def _remember_feed(session: Session, url: str, etag: str | None, last_modified: str | None) -> None:
    state = session.get(FeedState, url)
    if state is None:
        state = FeedState(url=url)
        session.add(state)
    state.etag = clip(single_line(etag), 500) if etag else None
    state.last_modified = clip(single_line(last_modified), 100) if last_modified else None
    state.fetched_at = utcnow()


def _store(
    engine: Engine,
    settings: Settings,
    source: str,
    kind: str,
    drafts: list[Draft],
    options: IngestOptions,
    fallback_date: tuple[datetime, str],
    outcome: SourceOutcome,
    feed_state: tuple[str | None, str | None] | None = None,
) -> None:
    accepted: list[ItemFields] = []
    for draft in drafts:
        if draft.problem:
            outcome.rejected += 1
            outcome.notes.append(f"rejected: {draft.problem}")
            continue
        accepted.append(settle_draft(settings, source, kind, draft, options, fallback_date))
    if not accepted:
        if outcome.rejected:
            problems = "; ".join(note.removeprefix("rejected: ") for note in outcome.notes)
            raise SourceError(problems if outcome.rejected == 1 else f"no item could be read: {problems}")
        if feed_state is None:
            raise SourceError("no news item found")
    if options.dry_run:
        with reading(engine) as session:
            outcome.previews.extend(zip(accepted, stored_ids(session, accepted), strict=True))
        return
    with transaction(engine) as session:
        for fields, (result, item) in zip(accepted, upsert_items(session, accepted), strict=True):
            if result == "duplicate":
                outcome.unchanged += 1
                outcome.notes.append(f"{fields.title!r} is already stored as item {item.id} (same link)")
                continue
            setattr(outcome, result, getattr(outcome, result) + 1)
            outcome.item_ids.append(item.id)
            if result != "unchanged":
                outcome.touched_ids.append(item.id)
                outcome.notes.extend(fields.notes)
        if feed_state is not None:
            _remember_feed(session, source, *feed_state)


def settle_draft(
    settings: Settings,
    source: str,
    kind: str,
    draft: Draft,
    options: IngestOptions,
    fallback_date: tuple[datetime, str],
) -> ItemFields:
    """Decide language, date, topics and summary of a draft, and clean every field for storage."""
    title = clip(single_line(draft.title), 300)
    body = clean_blocks(draft.body)
    summary = clip(single_line(draft.summary), 1000) or summary_from_body(body)
    text = plain_text(title, summary, body)
    # The words of the item once each, for its date and topics: the summary repeats the body.
    body_text = plain_text("", "" if body else summary, body)
    notes: list[str] = []

    language = normalise_language(draft.language, settings.languages)
    language_origin = "source"
    if language is None and options.language:
        language, language_origin = options.language, "option"
    elif language is None:
        # A few paragraphs tell the language as surely as a whole long page does.
        guess = detect_language(text[:3000], settings.languages)
        if guess.language:
            language, language_origin = guess.language, "detected"
        else:
            language, language_origin = settings.default_language, "default"
            notes.append(f"{title!r}: language unclear, set to {language} (fix with 'bulletin news set ID --lang')")

    date_phrase = None
    if options.date is not None:
        published_at, date_origin = options.date, "option"
    elif draft.published_at is not None:
        published_at, date_origin = draft.published_at, draft.date_origin
    else:
        published_at, date_origin = fallback_date
        timezone = settings.schedule.timezone
        found = None
        if kind != "feed":
            found = find_text_date(body_text, local_day(options.as_of or fallback_date[0], timezone))
        if found is not None:
            published_at, date_origin, date_phrase = text_date_moment(found, timezone), "text", found.phrase

    source_topics = map_source_topics(settings, draft.topics)
    topic_keys, topics_origin = source_topics, "source"
    evidence = topic_evidence(settings, title, body_text, language)
    if not source_topics:
        topic_keys, topics_origin = strongest_topics(settings, evidence), "keywords"
    if options.topics:
        topic_keys = sorted(set(topic_keys) | set(options.topics))
        if not source_topics:
            topics_origin = "option"

    return ItemFields(
        source=source[:2000],
        source_kind=kind,
        source_id=_bounded_id(draft.source_id),
        title=title,
        body=body,
        summary=summary,
        language=language,
        language_origin=language_origin,
        published_at=published_at,
        date_origin=date_origin,
        topics=topics_key(topic_keys),
        topics_origin=topics_origin,
        link=_bounded_url(draft.link),
        image=_bounded_url(draft.image),
        image_alt=clip(single_line(draft.image_alt), 500) or None,
        translation_key=clip(single_line(draft.translation_key), 300) or None,
        notes=notes,
        date_phrase=date_phrase,
        evidence=evidence,
    )


def _bounded_id(source_id: str) -> str:
    source_id = single_line(source_id)
    if len(source_id) <= 700:
        return source_id
    return source_id[:600] + "#" + hashlib.sha256(source_id.encode()).hexdigest()


def _bounded_url(url: str | None) -> str | None:
    url = optional_line(url)
    return url if url and len(url) <= 2000 and url.lower().startswith(("http://", "https://")) else None


def default_sources(settings: Settings) -> list[str]:
    """The feeds and folders of ``ingest.feeds`` and ``ingest.folders``, folders resolved to the config."""
    return [*settings.ingest.feeds, *(os.fspath(settings.resolve_path(folder)) for folder in settings.ingest.folders)]
