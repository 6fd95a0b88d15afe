"""RSS 2.0 and Atom feeds: conditional HTTP fetch, then entries read through feedparser."""

from __future__ import annotations

import calendar
import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser

from bulletin import __version__
from bulletin.news.draft import Draft, single_line
from bulletin.news.errors import SourceError
from bulletin.news.sanitize import html_to_content, html_to_text

USER_AGENT = f"bulletin/{__version__} (+https://github.com/; news ingest)"
_TRUNCATION_MARKS = ("[…]", "[...]", "…", "...", "[&hellip;]")


@dataclass(frozen=True)
class FetchResult:
    """The answer to a feed request: ``body`` is None when the server said 304 Not Modified."""

    url: str
    body: bytes | None
    etag: str | None
    last_modified: str | None

    @property
    def not_modified(self) -> bool:
        return self.body is None


def fetch_feed(url: str, *, etag: str | None, last_modified: str | None, timeout: float, max_bytes: int) -> FetchResult:
    """GET a feed, sending the validators of the last fetch; raise SourceError on any failure."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise SourceError(
                    f"the feed is {_size(int(declared))}, more than ingest.max_bytes ({_size(max_bytes)})"
                )
            body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise SourceError(f"the feed is larger than ingest.max_bytes ({_size(max_bytes)})")
            return FetchResult(
                url=response.geturl(),
                body=body,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
            )
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return FetchResult(url=url, body=None, etag=etag, last_modified=last_modified)
        raise SourceError(f"the server answered HTTP {exc.code} {exc.reason}") from None
    except TimeoutError:
        raise SourceError(f"no answer within {timeout:g} s (ingest.timeout)") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise SourceError(f"no answer within {timeout:g} s (ingest.timeout)") from None
        raise SourceError(f"cannot fetch: {reason}") from None
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot fetch: {exc}") from None


def _size(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB"


def parse_feed(data: bytes, source: str, *, languages: list[str]) -> list[Draft]:
    """Drafts for the entries of an RSS or Atom document; SourceError if it is not a feed."""
    parsed = feedparser.parse(data, sanitize_html=False, resolve_relative_uris=True)
    if not parsed.get("version"):
        problem = parsed.get("bozo_exception")
        detail = f": {single_line(str(problem))}" if problem else ""
        raise SourceError(f"not an RSS or Atom feed{detail}")
    feed_language = parsed.feed.get("language")
    drafts = []
    for position, entry in enumerate(parsed.entries, start=1):
        drafts.append(_draft_of(entry, position, source, feed_language))
    return drafts


def _draft_of(entry: Any, position: int, source: str, feed_language: str | None) -> Draft:
    title_detail = entry.get("title_detail") or {}
    raw_title = entry.get("title") or ""
    title = single_line(raw_title) if title_detail.get("type") == "text/plain" else html_to_text(raw_title)
    link = entry.get("link") or None
    identity = entry.get("id") or link or hashlib.sha256(f"{source}#{title}".encode()).hexdigest()
    contents = entry.get("content") or []
    summary_html = entry.get("summary") or ""
    body_html = contents[0].get("value", "") if contents else summary_html
    base = link or None
    content = html_to_content(body_html, base)
    summary = ""
    if contents and summary_html:
        candidate = html_to_text(summary_html)
        if candidate and not candidate.endswith(_TRUNCATION_MARKS):
            summary = candidate
    published = entry.get("published_parsed") or entry.get("updated_parsed")
    language = (
        (contents[0].get("language") if contents else None)
        or title_detail.get("language")
        or (entry.get("summary_detail") or {}).get("language")
        or feed_language
    )
    image, image_alt = _image_of(entry)
    draft = Draft(
        source_id=str(identity),
        title=title,
        body=content.blocks,
        summary=summary,
        link=link,
        image=image or content.image,
        image_alt=image_alt if image else content.image_alt,
        language=language,
        published_at=datetime.fromtimestamp(calendar.timegm(published), UTC) if published else None,
        date_origin="feed",
        topics=[str(tag.get("term") or tag.get("label") or "") for tag in entry.get("tags", [])],
    )
    if not title:
        draft.problem = f"entry {position} has no title" + (f" ({link})" if link else "")
    return draft


def _image_of(entry: Any) -> tuple[str | None, str | None]:
    for media in entry.get("media_content", []) or []:
        kind = str(media.get("medium") or media.get("type") or "")
        if media.get("url") and (kind == "image" or kind.startswith("image/")):
            return str(media["url"]), single_line(entry.get("media_description")) or None
    for thumbnail in entry.get("media_thumbnail", []) or []:
        if thumbnail.get("url"):
            return str(thumbnail["url"]), None
    for enclosure in entry.get("enclosures", []) or []:
        if str(enclosure.get("type", "")).startswith("image/") and enclosure.get("href"):
            return str(enclosure["href"]), None
    return None, None
