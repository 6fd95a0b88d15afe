"""Feeds fetched from a real local HTTP server: ETag and Last-Modified, 404, timeouts, size limit."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from bulletin.config import Ingest, Settings
from bulletin.db import reading
from bulletin.models import FeedState, NewsItem
from bulletin.news.ingest import ingest_sources

FIXTURES = Path(__file__).parent / "fixtures" / "news"
ETAG = '"feed-v1"'
LAST_MODIFIED = "Tue, 11 Mar 2025 10:00:00 GMT"


@dataclass
class FeedServer:
    """What the server serves and the requests it received."""

    base_url: str = ""
    body: bytes = b""
    etag: str | None = ETAG
    last_modified: str | None = LAST_MODIFIED
    requests: list[dict[str, str]] = field(default_factory=list)
    stop_slow: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    state = FeedServer(body=(FIXTURES / "feed_en.atom").read_bytes())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            if self.path == "/feed.xml":
                self._feed()
            elif self.path == "/slow.xml":
                state.stop_slow.wait(5)
                self._send(200, state.body)
            elif self.path == "/page.html":
                self._send(200, b"<html><body><h1>Welcome</h1><p>No feed here.</p></body></html>", "text/html")
            elif self.path == "/huge.xml":
                self._send(200, b"<?xml version='1.0'?><rss>" + b" " * 2_000_000 + b"</rss>")
            else:
                self._send(404, b"not found", "text/plain")

        def _feed(self) -> None:
            if state.etag and self.headers.get("If-None-Match") == state.etag:
                self.send_response(304)
                self.send_header("ETag", state.etag)
                self.end_headers()
                return
            if not state.etag and state.last_modified and self.headers.get("If-Modified-Since") == state.last_modified:
                self.send_response(304)
                self.end_headers()
                return
            self._send(200, state.body)

        def _send(self, status: int, body: bytes, kind: str = "application/atom+xml") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if status == 200 and state.etag:
                self.send_header("ETag", state.etag)
            if status == 200 and state.last_modified:
                self.send_header("Last-Modified", state.last_modified)
            self.end_headers()
            # The client may have given up (the timeout test).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop_slow.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def fast_settings(any_settings: Settings) -> Settings:
    return dataclasses.replace(any_settings, ingest=Ingest(timeout=0.5, max_bytes=1_000_000))


def stored_titles(engine: Engine) -> list[str]:
    with reading(engine) as session:
        return list(session.scalars(select(NewsItem.title).order_by(NewsItem.title)))


def test_an_unchanged_feed_costs_one_conditional_request(
    any_engine: Engine, fast_settings: Settings, feed_server: FeedServer
) -> None:
    url = feed_server.url("/feed.xml")

    first = ingest_sources(any_engine, fast_settings, [url])
    assert (first.added, first.failed) == (2, [])
    with reading(any_engine) as session:
        state = session.get(FeedState, url)
        assert state is not None
        assert (state.etag, state.last_modified) == (ETAG, LAST_MODIFIED)

    second = ingest_sources(any_engine, fast_settings, [url])

    assert (second.added, second.updated, second.unchanged, second.failed) == (0, 0, 0, [])
    assert second.outcomes[0].notes == ["not modified since the last fetch (HTTP 304)"]
    assert len(feed_server.requests) == 2
    assert "if-none-match" not in feed_server.requests[0]
    assert feed_server.requests[1]["if-none-match"] == ETAG
    assert feed_server.requests[1]["if-modified-since"] == LAST_MODIFIED
    assert stored_titles(any_engine) == [
        "Exchange mission to Senegal on community policing",
        "Youth & schools: a new call for projects",
    ]


def test_last_modified_alone_also_avoids_refetching(
    engine: Engine, settings: Settings, feed_server: FeedServer
) -> None:
    feed_server.etag = None
    url = feed_server.url("/feed.xml")
    ingest_sources(engine, settings, [url])

    again = ingest_sources(engine, settings, [url])

    assert again.outcomes[0].notes == ["not modified since the last fetch (HTTP 304)"]
    assert feed_server.requests[1]["if-modified-since"] == LAST_MODIFIED


def test_a_changed_feed_updates_its_entries_in_place(
    any_engine: Engine, fast_settings: Settings, feed_server: FeedServer
) -> None:
    url = feed_server.url("/feed.xml")
    ingest_sources(any_engine, fast_settings, [url])
    feed_server.body = feed_server.body.replace(b"share experience", b"share their experience")
    feed_server.etag = '"feed-v2"'

    report = ingest_sources(any_engine, fast_settings, [url])

    assert (report.added, report.updated, report.unchanged) == (0, 1, 1)
    with reading(any_engine) as session:
        mission = session.scalar(select(NewsItem).where(NewsItem.title.startswith("Exchange mission")))
        assert mission is not None and mission.changed
        assert "share their experience" in mission.body[0]["text"]
        state = session.get(FeedState, url)
        assert state is not None and state.etag == '"feed-v2"'


def test_404_timeout_and_non_feed_urls_fail_alone(
    any_engine: Engine, fast_settings: Settings, feed_server: FeedServer
) -> None:
    sources = [
        feed_server.url("/missing.xml"),
        feed_server.url("/slow.xml"),
        feed_server.url("/page.html"),
        feed_server.url("/huge.xml"),
        "http://127.0.0.1:9/nothing-listens-here",
        feed_server.url("/feed.xml"),
    ]
    started = time.monotonic()

    report = ingest_sources(any_engine, fast_settings, sources)

    assert time.monotonic() - started < 4
    errors = [outcome.error for outcome in report.outcomes]
    assert errors[0] == "the server answered HTTP 404 Not Found"
    assert errors[1] == "no answer within 0.5 s (ingest.timeout)"
    assert errors[2] == "not an RSS or Atom feed"
    assert errors[3] == "the feed is 2.0 MB, more than ingest.max_bytes (1.0 MB)"
    assert (errors[4] or "").startswith("cannot fetch: ")
    assert errors[5] is None
    assert report.added == 2
    with reading(any_engine) as session:
        # Only the feed that was read has validators stored.
        assert list(session.scalars(select(FeedState.url))) == [feed_server.url("/feed.xml")]


def test_a_dry_run_of_a_feed_url_lists_its_items_and_remembers_nothing(
    engine: Engine, settings: Settings, feed_server: FeedServer
) -> None:
    url = feed_server.url("/feed.xml")

    report = ingest_sources(engine, settings, [url], dry_run=True)

    assert [fields.title for fields, _stored in report.outcomes[0].previews] == [
        "Youth & schools: a new call for projects",
        "Exchange mission to Senegal on community policing",
    ]
    assert stored_titles(engine) == []
    with reading(engine) as session:
        assert session.get(FeedState, url) is None
