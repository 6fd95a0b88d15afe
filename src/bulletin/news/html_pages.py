"""Single HTML pages (a saved article): title, language, canonical link and image from the head,
body through the sanitiser."""

from __future__ import annotations

from html.parser import HTMLParser

from bulletin.news.dates import parse_date_line
from bulletin.news.draft import Draft, single_line
from bulletin.news.sanitize import html_to_content


class _HeadReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.language: str | None = None
        self.title: list[str] = []
        self.in_title = False
        self.meta: dict[str, str] = {}
        self.canonical: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "html" and values.get("lang"):
            self.language = values["lang"]
        elif tag == "title":
            self.in_title = True
        elif tag == "meta":
            name = values.get("property") or values.get("name") or ""
            if name and "content" in values:
                self.meta.setdefault(name.lower(), values["content"])
        elif tag == "link" and "canonical" in values.get("rel", "").lower().split():
            self.canonical = values.get("href") or None

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)


def read_html_page(text: str, source_id: str, *, timezone: str = "UTC") -> Draft:
    """A draft from one HTML page; scripts, styles and event attributes never reach the store."""
    head = _HeadReader()
    head.feed(text)
    head.close()
    link = head.canonical or head.meta.get("og:url") or None
    content = html_to_content(text, link)
    title = single_line(head.meta.get("og:title") or content.heading or "".join(head.title))
    blocks = content.blocks
    if blocks and blocks[0]["type"] == "heading" and blocks[0]["text"] == title:
        blocks = blocks[1:]
    published = head.meta.get("article:published_time") or head.meta.get("date")
    draft = Draft(
        source_id=source_id,
        title=title,
        body=blocks,
        summary=single_line(head.meta.get("description") or head.meta.get("og:description")),
        link=link,
        image=head.meta.get("og:image") or content.image,
        image_alt=head.meta.get("og:image:alt") or (None if head.meta.get("og:image") else content.image_alt),
        language=head.language,
        published_at=parse_date_line(published, timezone) if published else None,
        date_origin="metadata",
    )
    if not title:
        draft.problem = "the page has no title (no <title> or <h1>)"
    return draft
