"""RSS 2.0 and Atom feeds: conditional HTTP fetch, then entries read through feedparser."""

from __future__ import annotations

import calendar
import hashlib
import http.client
import io
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
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


class Deadline:
    """The moment a whole fetch must be over: connecting, headers, redirects and body together."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.ends = clock() + seconds

    def remaining(self) -> float:
        """Seconds left; TimeoutError once none are."""
        left = self.ends - self.clock()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left


class _DeadlineReader(io.RawIOBase):
    """Reads a socket with its timeout shortened to what is left of the deadline before each read."""

    def __init__(self, sock: Any, deadline: Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._deadline.remaining())
        received: int = self._sock.recv_into(buffer)
        return received

    def close(self) -> None:
        if not self.closed:
            super().close()
            # As socket.SocketIO does: the socket really closes once its last reader has.
            self._sock._decref_socketios()


class _DeadlineSocket:
    """A connected socket whose reader obeys the deadline; everything else is the socket's own."""

    def __init__(self, sock: Any, deadline: Deadline) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str = "r", *args: Any, **kwargs: Any) -> io.BufferedReader:
        # The response outlives the connection, which urllib closes at once: like socket.makefile,
        # count the reader so that closing the connection leaves the socket open for it.
        self._sock._io_refs += 1
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        self.timeout = self._deadline.remaining()
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self._deadline)


class _DeadlineHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        self.timeout = self._deadline.remaining()
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self._deadline)


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_DeadlineHTTPConnection, req, deadline=self._deadline)  # type: ignore[arg-type]


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(
            _DeadlineHTTPSConnection,  # type: ignore[arg-type]
            req,
            context=self._context,  # type: ignore[attr-defined]
            deadline=self._deadline,
        )


def check_feed_url(url: str) -> None:
    """Refuse (SourceError) a URL that is not http(s) with a host, before any request."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise SourceError(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise SourceError("not a valid feed URL (give http:// or https:// and a host name)")


def fetch_feed(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    timeout: float,
    max_bytes: int,
    clock: Callable[[], float] = time.monotonic,
) -> FetchResult:
    """GET a feed, sending the validators of the last fetch; raise SourceError on any failure.

    ``timeout`` bounds the whole fetch (connection, redirects, headers and body), not each read,
    so a server that sends one byte at a time cannot hold the ingest.
    """
    check_feed_url(url)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = Deadline(timeout, clock)
    late = f"no answer within {timeout:g} s (ingest.timeout)"
    try:
        request = urllib.request.Request(url, headers=headers)
        opener = urllib.request.build_opener(_DeadlineHTTPHandler(deadline), _DeadlineHTTPSHandler(deadline))
        with opener.open(request, timeout=deadline.remaining()) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise SourceError(
                    f"the feed is {_size(int(declared))}, more than ingest.max_bytes ({_size(max_bytes)})"
                )
            body = _read_limited(response, max_bytes)
            return FetchResult(
                url=response.geturl(),
                body=body,
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
            )
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return FetchResult(url=url, body=None, etag=etag, last_modified=last_modified)
        raise SourceError(f"the server answered HTTP {exc.code} {single_line(str(exc.reason))[:200]}") from None
    except TimeoutError:
        raise SourceError(late) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise SourceError(late) from None
        raise SourceError(f"cannot fetch: {single_line(str(reason))[:300]}") from None
    except http.client.HTTPException as exc:
        # A header line over 64 KB, too many headers, a broken status line...
        detail = single_line(str(exc))[:200] or type(exc).__name__
        raise SourceError(f"the server sent a malformed HTTP answer ({detail})") from None
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot fetch: {single_line(str(exc))[:300]}") from None


def _read_limited(response: Any, max_bytes: int) -> bytes:
    """The body, read in pieces and refused as soon as it passes ``max_bytes``."""
    pieces: list[bytes] = []
    total = 0
    while True:
        piece = response.read(min(65536, max_bytes + 1 - total))
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        total += len(piece)
        if total > max_bytes:
            raise SourceError(f"the feed is larger than ingest.max_bytes ({_size(max_bytes)})")


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
