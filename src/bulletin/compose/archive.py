"""The public archive: which editions are public, what their pages say, their feeds, the static export.

Only editions whose bulletins went out (sending or sent) are public; every other state is
"not found" at every archive address. Pages show no personal data: the web version of a
variant is its stored rendering with the per-recipient placeholders filled with neutral text
and links to the public subscription page instead of signed ones.

The HTML of the pages is written by the web edge (:class:`ArchivePages`), which the static
export is given, so this module never imports it.
"""

from __future__ import annotations

import dataclasses
import html as html_lib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from babel.dates import format_date
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import UnaryExpression

from bulletin.app.editions import edition_stories
from bulletin.compose import placeholders
from bulletin.compose.archive_urls import (
    EXPORT_STYLESHEET,
    ExportLinks,
    Links,
    ServerLinks,
    export_edition_path,
    export_feed_path,
    export_index_path,
    export_item_path,
)
from bulletin.compose.render import (
    EditionRenderer,
    ItemView,
    edition_subject,
    intro_paragraphs,
    item_blocks,
    item_view,
)
from bulletin.config import Settings
from bulletin.errors import BulletinError, NotFound
from bulletin.models import Edition, EditionItem, EditionStatus, EditionVariant, NewsItem
from bulletin.news.translations import translations_of

# Editions whose bulletins went out: their readers hold links to these pages.
PUBLIC_STATUSES = frozenset({EditionStatus.SENDING, EditionStatus.SENT})
EXPORT_MARKER = ".bulletin-archive.json"
ATOM_NS = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True)
class EditionEntry:
    """A public edition in one language: what its archive page and its feed entry show."""

    edition_id: int
    language: str
    subject: str
    date: str
    published: datetime
    intro_paragraphs: list[str]
    stories: list[ItemView]


@dataclass(frozen=True)
class IndexPage:
    """One page of the archive index in one language, newest edition first."""

    language: str
    entries: list[EditionEntry]
    page: int
    pages: int


@dataclass(frozen=True)
class ItemPage:
    """A news item of a public edition, in full, with its other language versions."""

    view: ItemView
    language: str
    # (edition id, subject in the page's language) of the public editions that carried the item.
    editions: list[tuple[int, str]]
    # (language, item id) of every public version, this one included, in the configured order.
    versions: list[tuple[str, int]]


class ArchivePages(Protocol):
    """Writes the archive's HTML pages (the web edge provides it)."""

    def index(self, page: IndexPage, links: Links) -> str: ...

    def edition(self, entry: EditionEntry, links: Links) -> str: ...

    def item(self, page: ItemPage, links: Links) -> str: ...

    def stylesheet(self) -> bytes: ...


# ---------------------------------------------------------------------------
# Queries


def published_moment(edition: Edition) -> datetime:
    """When an edition went out (its send start while it is still sending)."""
    moment = edition.sent_at or edition.send_started_at or edition.updated_at
    assert moment is not None
    return moment


def _sent_order() -> tuple[UnaryExpression[Any], UnaryExpression[Any]]:
    return func.coalesce(Edition.sent_at, Edition.send_started_at).desc(), Edition.id.desc()


def public_edition(session: Session, edition_id: int) -> Edition:
    """A public edition, or NotFound for any other state (or none)."""
    edition = session.get(Edition, edition_id)
    if edition is None or edition.status not in PUBLIC_STATUSES:
        raise NotFound(f"no public edition with id {edition_id}")
    return edition


def _check_language(settings: Settings, language: str) -> None:
    if language not in settings.languages:
        raise NotFound(f"no archive in language {language!r}")


def _date_text(settings: Settings, moment: datetime, language: str) -> str:
    return format_date(moment.astimezone(ZoneInfo(settings.schedule.timezone)).date(), format="long", locale=language)


def edition_entry(session: Session, settings: Settings, edition: Edition, language: str) -> EditionEntry:
    """What a public edition says in ``language``: subject, date, introduction and stories."""
    _check_language(settings, language)
    renderer = EditionRenderer(session, settings, edition)
    moment = published_moment(edition)
    return EditionEntry(
        edition_id=edition.id,
        language=language,
        subject=renderer.subject(language),
        date=_date_text(settings, moment, language),
        published=moment,
        intro_paragraphs=intro_paragraphs((edition.intros or {}).get(language, "")),
        stories=[view for _, view in renderer.views(language)],
    )


def public_edition_entry(session: Session, settings: Settings, edition_id: int, language: str) -> EditionEntry:
    return edition_entry(session, settings, public_edition(session, edition_id), language)


def _public_editions(session: Session, offset: int = 0, limit: int | None = None) -> list[Edition]:
    query = select(Edition).where(Edition.status.in_(PUBLIC_STATUSES)).order_by(*_sent_order()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def index_page(session: Session, settings: Settings, language: str, page: int = 1) -> IndexPage:
    """A page of the archive index; NotFound past the last page."""
    _check_language(settings, language)
    per_page = settings.archive.per_page
    total = session.scalar(select(func.count()).select_from(Edition).where(Edition.status.in_(PUBLIC_STATUSES))) or 0
    pages = max(1, math.ceil(total / per_page))
    if page < 1 or page > pages:
        raise NotFound(f"the archive has no page {page}")
    editions = _public_editions(session, (page - 1) * per_page, per_page)
    entries = [edition_entry(session, settings, edition, language) for edition in editions]
    return IndexPage(language=language, entries=entries, page=page, pages=pages)


def feed_entries(session: Session, settings: Settings, language: str) -> list[EditionEntry]:
    """The newest public editions for a language's feed."""
    _check_language(settings, language)
    editions = _public_editions(session, 0, settings.archive.feed_entries)
    return [edition_entry(session, settings, edition, language) for edition in editions]


def _public_item_editions(session: Session, item_id: int) -> list[Edition]:
    return list(
        session.scalars(
            select(Edition)
            .join(EditionItem, EditionItem.edition_id == Edition.id)
            .where(
                EditionItem.news_item_id == item_id,
                EditionItem.excluded.is_(False),
                Edition.status.in_(PUBLIC_STATUSES),
            )
            .order_by(*_sent_order())
        )
    )


def item_page(session: Session, settings: Settings, item_id: int) -> ItemPage:
    """A news item carried by a public edition (NotFound otherwise), with its whole text."""
    item = session.get(NewsItem, item_id)
    editions = _public_item_editions(session, item_id) if item is not None else []
    if item is None or not editions:
        raise NotFound(f"no public news item with id {item_id}")
    stories = edition_stories(session, settings, editions[0])
    story = next(story for story in stories if any(v.item.id == item_id for v in story.versions))
    language = item.language if item.language in settings.languages else settings.default_language
    view = dataclasses.replace(item_view(settings, story, item, language), blocks=item_blocks(item), read_more=None)
    rank = {code: index for index, code in enumerate(settings.languages)}
    versions = {item.language: item.id}
    for other in translations_of(session, item):
        if other.language not in versions and _public_item_editions(session, other.id):
            versions[other.language] = other.id
    ordered = sorted(versions.items(), key=lambda pair: (rank.get(pair[0], len(rank)), pair[0]))
    return ItemPage(
        view=view,
        language=language,
        editions=[(edition.id, edition_subject(settings, edition, language)) for edition in editions],
        versions=ordered,
    )


# ---------------------------------------------------------------------------
# The web version of a variant


def public_fill(settings: Settings, content: str, marker: str, language: str, *, html: bool) -> str:
    """A variant's content with neutral text for the reader's name and no signed link.

    The links to unsubscribe and change preferences go to the public subscription page.
    """
    public_page = ServerLinks(settings.web.base_url).subscribe(language)
    values = placeholders.recipient_values(None, public_page, public_page)
    return placeholders.fill(content, marker, values, html=html)


def web_version(session: Session, settings: Settings, edition_id: int, language: str, interests: str) -> str:
    """The HTML of a public edition's variant, as its readers received it, with nothing personal."""
    edition = public_edition(session, edition_id)
    _check_language(settings, language)
    keys = ",".join(sorted({key for key in interests.split(",") if key}))
    variant = session.scalar(
        select(EditionVariant).where(
            EditionVariant.edition_id == edition.id,
            EditionVariant.language == language,
            EditionVariant.interests == keys,
        )
    )
    if variant is None:
        raise NotFound(f"edition {edition_id} has no {language} variant for topics {keys or 'all'}")
    marker = placeholders.edition_marker(session, edition.id)
    return public_fill(settings, variant.html, marker, language, html=True)


# ---------------------------------------------------------------------------
# Atom feeds (RFC 4287)


def _tag(settings: Settings, moment: datetime, specific: str) -> str:
    """A tag URI (RFC 4151): stable whatever the address the archive is served from."""
    authority = settings.sender.list_id.strip().lower() or "bulletin"
    return f"tag:{authority},{moment.date().isoformat()}:{specific}"


def _atom_time(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def atom_feed(settings: Settings, language: str, entries: Sequence[EditionEntry], links: Links, self_url: str) -> bytes:
    """The Atom feed of a language: one entry per edition, with its stories linked."""
    ElementTree.register_namespace("", ATOM_NS)

    def sub(parent: ElementTree.Element, name: str, text: str | None = None, **attributes: str) -> ElementTree.Element:
        element = ElementTree.SubElement(parent, f"{{{ATOM_NS}}}{name}", attributes)
        if text is not None:
            element.text = text
        return element

    feed = ElementTree.Element(f"{{{ATOM_NS}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": language})
    # The feed's id is dated by its first edition, so it never changes once an edition is out.
    oldest = min((entry.published for entry in entries), default=datetime(2000, 1, 1))
    sub(feed, "id", _tag(settings, oldest, f"archive/{language}"))
    sub(feed, "title", f"{settings.organisation.list_name} · {settings.organisation.name}")
    newest = max((entry.published for entry in entries), default=None)
    sub(feed, "updated", _atom_time(newest) if newest else "2000-01-01T00:00:00Z")
    author = sub(feed, "author")
    sub(author, "name", settings.organisation.name)
    sub(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    sub(feed, "link", rel="alternate", type="text/html", href=links.index(language))
    for entry in entries:
        element = sub(feed, "entry")
        sub(element, "id", _tag(settings, entry.published, f"edition/{entry.edition_id}/{language}"))
        sub(element, "title", entry.subject)
        sub(element, "updated", _atom_time(entry.published))
        sub(element, "published", _atom_time(entry.published))
        sub(element, "link", rel="alternate", type="text/html", href=links.edition(entry.edition_id, language))
        stories = "".join(
            f'<li><a href="{html_lib.escape(links.item(story.key))}">{html_lib.escape(story.title)}</a></li>'
            for story in entry.stories
        )
        intro = "".join(f"<p>{html_lib.escape(paragraph)}</p>" for paragraph in entry.intro_paragraphs)
        sub(element, "content", intro + (f"<ul>{stories}</ul>" if stories else ""), type="html")
    ElementTree.indent(feed)
    document: bytes = ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


# ---------------------------------------------------------------------------
# Static export


@dataclass(frozen=True)
class ExportReport:
    folder: Path
    written: int
    unchanged: int
    removed: int


def _read_marker(folder: Path) -> list[str] | None:
    """The files a previous export wrote, or None when the folder is not an export."""
    marker = folder / EXPORT_MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "bulletin archive export":
        return None
    files = data.get("files")
    return [str(name) for name in files] if isinstance(files, list) else []


def _prepare_folder(folder: Path) -> list[str]:
    if folder.exists() and not folder.is_dir():
        raise BulletinError(f"{folder} is not a folder")
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise BulletinError(f"cannot create {folder}: {exc.strerror}") from None
        return []
    previous = _read_marker(folder)
    if previous is None:
        if any(folder.iterdir()):
            raise BulletinError(
                f"{folder} is not empty and was not written by 'bulletin archive export': choose a new or empty folder"
            )
        return []
    return previous


def _write_if_changed(folder: Path, name: str, data: bytes) -> bool:
    """Write one file atomically (unless it already holds ``data``); True when written."""
    path = folder / name
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def _all_public_item_ids(session: Session, editions: Iterable[Edition]) -> list[int]:
    ids = session.scalars(
        select(EditionItem.news_item_id)
        .where(EditionItem.edition_id.in_([edition.id for edition in editions]), EditionItem.excluded.is_(False))
        .distinct()
    )
    return sorted(ids)


def export_archive(
    session: Session, settings: Settings, folder: Path, pages: ArchivePages, *, base_url: str | None = None
) -> ExportReport:
    """Write the archive as static files with relative links; absolute links in feeds with ``base_url``.

    Running it again on the same folder updates it (and removes pages no longer public); a
    folder that holds anything else is refused.
    """
    folder = folder.expanduser().resolve()
    previous = _prepare_folder(folder)
    server = settings.web.base_url
    files: dict[str, bytes] = {}
    editions = _public_editions(session)
    for language in settings.languages:
        total_pages = index_page(session, settings, language).pages
        for number in range(1, total_pages + 1):
            page = index_page(session, settings, language, number)
            path = export_index_path(language, number)
            files[path] = pages.index(page, ExportLinks(path, server)).encode("utf-8")
            if number == 1 and language == settings.default_language:
                files["index.html"] = pages.index(page, ExportLinks("index.html", server)).encode("utf-8")
        for edition in editions:
            path = export_edition_path(edition.id, language)
            entry = edition_entry(session, settings, edition, language)
            files[path] = pages.edition(entry, ExportLinks(path, server)).encode("utf-8")
        feed_path = export_feed_path(language)
        feed_links = ExportLinks(feed_path, server, base_url)
        self_url = feed_links.feed(language)
        entries = feed_entries(session, settings, language)
        files[feed_path] = atom_feed(settings, language, entries, feed_links, self_url)
    for item_id in _all_public_item_ids(session, editions):
        path = export_item_path(item_id)
        files[path] = pages.item(item_page(session, settings, item_id), ExportLinks(path, server)).encode("utf-8")
    files[EXPORT_STYLESHEET] = pages.stylesheet()

    written = unchanged = removed = 0
    try:
        for name, data in sorted(files.items()):
            if _write_if_changed(folder, name, data):
                written += 1
            else:
                unchanged += 1
        for name in previous:
            stale = (folder / name).resolve()
            if name not in files and stale.is_relative_to(folder) and stale.is_file():
                stale.unlink()
                removed += 1
        marker = {"written_by": "bulletin archive export", "files": sorted(files)}
        _write_if_changed(folder, EXPORT_MARKER, json.dumps(marker, indent=1).encode("utf-8") + b"\n")
    except OSError as exc:
        raise BulletinError(f"cannot write the archive to {folder}: {exc.strerror}") from None
    return ExportReport(folder=folder, written=written, unchanged=unchanged, removed=removed)
