"""Feed and Markdown HTML: cleaned with an allow-list (nh3), then turned into plain-text blocks.

nh3 (the ammonia sanitiser) removes scripts, styles, frames, event attributes and ``javascript:``
links; what survives is walked with the standard HTML parser into the block structure the
composer renders, so no markup at all reaches the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

import nh3

from bulletin.news.draft import Block, clean_blocks, single_line

# Structure worth keeping while reading: paragraphs, links, lists, emphasis, line breaks and
# sub-headings, plus the containers whose edges separate paragraphs.
ALLOWED_TAGS = {
    "p", "br", "a", "ul", "ol", "li", "em", "strong", "b", "i", "u", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "div", "section", "article", "figure", "figcaption", "img", "table", "tr", "td", "th",
    "pre", "hr", "dl", "dt", "dd", "span", "small", "sub", "sup", "cite", "q", "abbr", "time", "code",
}  # fmt: skip
REMOVED_WITH_CONTENT = {"script", "style", "iframe", "noscript", "template", "object", "embed", "title", "head"}
ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt"}}
URL_SCHEMES = {"http", "https", "mailto"}

_BLOCK_TAGS = {
    "p", "div", "section", "article", "blockquote", "figure", "figcaption", "table", "tr", "pre", "hr",
    "dl", "dt", "dd", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip
_BREAK = "\x01"
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def sanitize_html(html: str) -> str:
    """HTML reduced to the allow-list: no script, style, frame, event attribute or javascript: link."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags=REMOVED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=None,
        strip_comments=True,
    )


@dataclass
class HtmlContent:
    """Blocks read from HTML, with the first image and the first level-1 heading found."""

    blocks: list[Block] = field(default_factory=list)
    image: str | None = None
    image_alt: str | None = None
    heading: str | None = None


class _BlockBuilder(HTMLParser):
    def __init__(self, base_url: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.content = HtmlContent()
        self.text: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.anchor: tuple[str, list[str]] | None = None
        self.heading: str | None = None
        self.list_depth = 0
        self.list_items: list[str] = []
        self.list_links: list[tuple[str, str]] = []
        self.breaks = 0

    # Paragraph text collected since the last block edge.
    def _flush(self) -> None:
        paragraphs = _split_on_double_breaks("".join(self.text))
        self.text = []
        links, self.links = self.links, []
        if self.list_depth:
            if paragraphs:
                self.list_items.append(" ".join(paragraphs))
            self.list_links.extend(links)
            return
        if self.heading is not None:
            if paragraphs:
                self.content.blocks.append({"type": "heading", "text": " ".join(paragraphs)})
                if self.heading == "h1" and self.content.heading is None:
                    self.content.heading = " ".join(paragraphs)
            self._emit_links(links)
            return
        whole = " ".join(paragraphs)
        if len(links) == 1 and single_line(links[0][1]) == whole and whole:
            url, label = links[0]
            self.content.blocks.append({"type": "link", "url": url, "label": "" if label == url else label})
            return
        for paragraph in paragraphs:
            self.content.blocks.append({"type": "paragraph", "text": paragraph})
        self._emit_links(links)

    def _emit_links(self, links: list[tuple[str, str]]) -> None:
        for url, label in links:
            self.content.blocks.append({"type": "link", "url": url, "label": "" if label == url else label})

    def _flush_list(self) -> None:
        if self.list_items:
            self.content.blocks.append({"type": "list", "items": self.list_items})
        self.list_items = []
        links, self.list_links = self.list_links, []
        self._emit_links(links)

    def _url(self, href: str | None) -> str | None:
        if not href:
            return None
        href = href.strip()
        if href.lower().startswith("mailto:"):
            # An email address stays text.
            return None
        url = urljoin(self.base_url, href) if self.base_url else href
        return url if url.lower().startswith(("http://", "https://")) else None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "br":
            self.text.append(_BREAK)
            return
        if tag == "img":
            src = self._url(values.get("src"))
            if src and self.content.image is None:
                self.content.image = src
                self.content.image_alt = single_line(values.get("alt")) or None
            return
        if tag == "a":
            url = self._url(values.get("href"))
            self.anchor = (url, []) if url else None
            return
        if tag in _BLOCK_TAGS:
            if tag in ("ul", "ol"):
                self._flush()
                self.list_depth += 1
            elif tag == "li" or self.list_depth == 0 or tag in _HEADINGS:
                self._flush()
            if tag in _HEADINGS and self.list_depth == 0:
                self.heading = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.anchor is not None:
            url, parts = self.anchor
            self.anchor = None
            label = single_line("".join(parts))
            self.links.append((url, label or url))
            return
        if tag in _BLOCK_TAGS:
            self._flush()
            if tag in _HEADINGS:
                self.heading = None
            if tag in ("ul", "ol") and self.list_depth:
                self.list_depth -= 1
                if self.list_depth == 0:
                    self._flush_list()

    def handle_data(self, data: str) -> None:
        # Newlines in the markup are layout, not line breaks.
        data = data.replace(_BREAK, " ")
        self.text.append(data)
        if self.anchor is not None:
            self.anchor[1].append(data)

    def close(self) -> None:
        super().close()
        self._flush()
        self.list_depth = 0
        self._flush_list()


def _split_on_double_breaks(text: str) -> list[str]:
    """Paragraphs of text where each ``<br>`` is a marker: two breaks in a row end a paragraph."""
    paragraphs: list[str] = []
    current: list[str] = []
    blank_run = 0
    for line in text.split(_BREAK):
        if line.strip():
            if blank_run >= 1 and current:
                paragraphs.append(single_line(" ".join(current)))
                current = []
            current.append(line)
            blank_run = 0
        else:
            blank_run += 1
    if current:
        paragraphs.append(single_line(" ".join(current)))
    return [paragraph for paragraph in paragraphs if paragraph]


def html_to_content(html: str, base_url: str | None = None) -> HtmlContent:
    """Sanitise HTML and read it into plain-text blocks."""
    builder = _BlockBuilder(base_url)
    builder.feed(sanitize_html(html))
    builder.close()
    builder.content.blocks = clean_blocks(builder.content.blocks)
    return builder.content


def html_to_text(html: str) -> str:
    """The text of an HTML fragment on one line (for titles): tags dropped, entities decoded."""
    content = html_to_content(html)
    parts: list[str] = []
    for block in content.blocks:
        if block["type"] == "list":
            parts.extend(block["items"])
        elif block["type"] == "link":
            parts.append(block["label"] or block["url"])
        else:
            parts.append(block["text"])
    return single_line(" ".join(parts))
