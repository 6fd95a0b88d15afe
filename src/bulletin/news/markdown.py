"""Markdown files with front matter (title, date, lang, topics, link, translation_key, summary,
image, image_alt); the body is rendered with markdown-it and read through the HTML sanitiser."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import frontmatter
from markdown_it import MarkdownIt

from bulletin.news.dates import as_utc, parse_date_line
from bulletin.news.draft import Draft, single_line
from bulletin.news.errors import SourceError
from bulletin.news.sanitize import html_to_content

# Accepted spellings of each front matter key.
KEYS = {
    "title": ("title",),
    "date": ("date", "published", "published_at", "pubdate"),
    "lang": ("lang", "language", "langue", "idioma"),
    "topics": ("topics", "tags", "categories", "category"),
    "link": ("link", "url", "canonical"),
    "translation_key": ("translation_key", "translationKey", "translation"),
    "summary": ("summary", "description", "excerpt"),
    "image": ("image",),
    "image_alt": ("image_alt", "imageAlt", "alt"),
}


def _get(metadata: dict[str, Any], name: str) -> Any:
    for key in KEYS[name]:
        if metadata.get(key) not in (None, ""):
            return metadata[key]
    return None


def read_markdown(text: str, source_id: str, *, timezone: str = "UTC") -> Draft:
    """A draft from a Markdown document; the first level-1 heading is the title if the front matter has none."""
    metadata, content_text = _front_matter(text)
    _check_types(metadata)
    link = _text(_get(metadata, "link"))
    html = MarkdownIt("commonmark").render(content_text)
    content = html_to_content(html, link)
    title = _text(_get(metadata, "title"))
    blocks = content.blocks
    if not title and content.heading:
        title = content.heading
        first_heading = next(i for i, b in enumerate(blocks) if b["type"] == "heading" and b["text"] == title)
        blocks = blocks[:first_heading] + blocks[first_heading + 1 :]
    published, problem = _date(_get(metadata, "date"), timezone)
    topics = _get(metadata, "topics")
    if isinstance(topics, str):
        topics = [part.strip() for part in topics.split(",")]
    image = _text(_get(metadata, "image"))
    draft = Draft(
        source_id=source_id,
        title=title,
        body=blocks,
        summary=_text(_get(metadata, "summary")),
        link=link or None,
        image=image or content.image,
        image_alt=_text(_get(metadata, "image_alt")) or (None if image else content.image_alt),
        language=_text(_get(metadata, "lang")) or None,
        published_at=published,
        date_origin="metadata",
        topics=[str(topic) for topic in topics or [] if str(topic).strip()],
        translation_key=_text(_get(metadata, "translation_key")) or None,
    )
    if problem:
        draft.problem = problem
    elif not title:
        draft.problem = "no title (give 'title' in the front matter or start with a '# ' heading)"
    return draft


TEXT_KEYS = ("title", "lang", "link", "translation_key", "summary", "image", "image_alt")


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(metadata, body): the front matter must close and hold ``key: value`` lines."""
    handler = frontmatter.detect_format(text, frontmatter.handlers)
    if handler is None:
        return {}, text
    try:
        raw, body = handler.split(text)
    except ValueError:
        opening = text.lstrip().splitlines()[0].strip() if text.strip() else "---"
        raise SourceError(
            f"the front matter opened by {opening!r} on its first line is never closed: "
            f"add a line {opening!r} after the metadata"
        ) from None
    try:
        loaded = handler.load(raw)
    except ValueError as exc:
        # YAML builds dates as it reads them: 2025-13-45 fails here.
        raise SourceError(f"the front matter holds an impossible value: {single_line(str(exc))}") from None
    except Exception as exc:
        # python-frontmatter raises the YAML (or TOML, JSON) parser's own error types.
        raise SourceError(f"the front matter cannot be read: {single_line(str(exc))}") from None
    if loaded is None:
        return {}, body
    if not isinstance(loaded, dict):
        raise SourceError(f"the front matter must be 'key: value' lines, not {type(loaded).__name__}")
    return {str(key): value for key, value in loaded.items()}, body


def _check_types(metadata: dict[str, Any]) -> None:
    """Refuse values of the wrong shape (``topics: 5``, ``title: [a, b]``) with the key named."""
    for name in TEXT_KEYS:
        value = _get(metadata, name)
        if value is not None and not isinstance(value, str | int | float | date):
            raise SourceError(f"the front matter {name!r} must be text, not {_shape(value)}")
    topics = _get(metadata, "topics")
    if topics is not None and not (
        isinstance(topics, str) or (isinstance(topics, list) and all(isinstance(t, str | int) for t in topics))
    ):
        raise SourceError(
            f"the front matter 'topics' must be a list of topic names or comma-separated text, not {_shape(topics)}"
        )
    published = _get(metadata, "date")
    if published is not None and not isinstance(published, str | date | datetime):
        raise SourceError(f"the front matter 'date' must be a date such as 2025-03-14, not {_shape(published)}")


def _shape(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return repr(value)[:60]


def _text(value: Any) -> str:
    return single_line(str(value)) if value is not None else ""


def _date(value: Any, timezone: str) -> tuple[datetime | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, datetime | date):
        return as_utc(value, timezone), None
    parsed = parse_date_line(str(value), timezone)
    if parsed is None:
        return None, f"the front matter date {str(value)!r} is not a date"
    return parsed, None
