"""What a reader found in a source, before language, date and topics are settled."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Block = dict[str, Any]

SUMMARY_LIMIT = 300
TITLE_LIMIT = 300
# Line and paragraph separators that are not in the Cc category but still break a header.
_BREAKS = {"\u2028", "\u2029", "\u0085"}


@dataclass
class Draft:
    """One news item as read from its source; unset fields are filled in at ingest."""

    source_id: str
    title: str
    body: list[Block] = field(default_factory=list)
    summary: str = ""
    link: str | None = None
    image: str | None = None
    image_alt: str | None = None
    language: str | None = None
    published_at: datetime | None = None
    date_origin: str = "metadata"
    topics: list[str] = field(default_factory=list)
    translation_key: str | None = None
    # Set when the item cannot be stored (no title...): it is counted as rejected.
    problem: str | None = None


def single_line(value: str | None) -> str:
    """Remove CR, LF and every other control character, and collapse runs of spaces."""
    if not value:
        return ""
    if value.isprintable():
        # Nothing to replace or drop (the common case): only runs of spaces to collapse.
        return " ".join(value.split())
    cleaned = "".join(
        " " if (ch in _BREAKS or unicodedata.category(ch) in ("Cc", "Zl", "Zp")) else ch
        for ch in value
        if unicodedata.category(ch) != "Cf" or ch in ("\u200d",)
    )
    return " ".join(cleaned.split())


def optional_line(value: str | None) -> str | None:
    cleaned = single_line(value)
    return cleaned or None


def clip(text: str, limit: int) -> str:
    """Cut text on a word boundary to at most ``limit`` characters, marking the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:-–—")
    return cut + "…"


def first_sentences(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """The longest run of whole sentences of ``text`` within ``limit``, else the text cut on a word."""
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    best = -1
    for index, ch in enumerate(window):
        at_end = index + 1 >= len(window) or window[index + 1] == " "
        if ch in ".!?…" and at_end and index >= 40:
            best = index
    if best > 0:
        return window[: best + 1].strip()
    return clip(text, limit)


def summary_from_body(body: list[Block], limit: int = SUMMARY_LIMIT) -> str:
    """The first paragraph, cut on a sentence."""
    for block in body:
        if block.get("type") == "paragraph" and block.get("text"):
            return first_sentences(single_line(block["text"]), limit)
    for block in body:
        if block.get("type") == "list" and block.get("items"):
            return first_sentences(single_line("; ".join(block["items"])), limit)
    return ""


def clean_blocks(body: list[Block]) -> list[Block]:
    """Blocks with single-line plain text, empty ones dropped and neighbouring lists merged."""
    result: list[Block] = []
    for block in body:
        kind = block.get("type")
        if kind in ("paragraph", "heading"):
            text = single_line(block.get("text"))
            if text:
                result.append({"type": kind, "text": text})
        elif kind == "list":
            items = [single_line(item) for item in block.get("items", [])]
            items = [item for item in items if item]
            if not items:
                continue
            if result and result[-1]["type"] == "list":
                result[-1]["items"].extend(items)
            else:
                result.append({"type": "list", "items": items})
        elif kind == "link":
            url = single_line(block.get("url"))
            if url:
                result.append({"type": "link", "url": url, "label": single_line(block.get("label"))})
    return result


def plain_text(draft_title: str, summary: str, body: list[Block]) -> str:
    """All the words of an item, for language detection and keyword tagging."""
    parts = [draft_title, summary]
    for block in body:
        if block["type"] in ("paragraph", "heading"):
            parts.append(block["text"])
        elif block["type"] == "list":
            parts.extend(block["items"])
        elif block["type"] == "link" and block.get("label"):
            parts.append(block["label"])
    return "\n".join(part for part in parts if part)
