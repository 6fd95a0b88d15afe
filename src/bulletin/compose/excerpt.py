"""Excerpts: the first words of an item's text blocks, cut on a sentence or word boundary.

An excerpt is made of whole blocks (paragraphs, headings, lists, links) and at most one cut
paragraph or list entry. It is plain data that the templates escape as they write it, so the
markup of the email can never be broken by a cut.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ELLIPSIS = "…"
# A sentence ends with . ! ? or … (perhaps followed by a closing quote or bracket) before a space.
_SENTENCE_END = re.compile(r"[.!?…][\"'»”’)\]]*$")
# French typography puts a space before a closing guillemet: « Ça marche. »
_CLOSING = re.compile(r"[\"'»”’)\]]+")


@dataclass(frozen=True)
class Excerpt:
    """The blocks to show, and whether anything of the item was left out."""

    blocks: list[dict[str, Any]]
    truncated: bool


def block_words(block: dict[str, Any]) -> int:
    """How many words a block holds (a link counts its label)."""
    kind = block.get("type")
    if kind == "list":
        return sum(len(str(entry).split()) for entry in block.get("items") or [])
    if kind == "link":
        return len(str(block.get("label") or "").split())
    return len(str(block.get("text") or "").split())


def cut_text(text: str, budget: int) -> str:
    """The first ``budget`` words of ``text``: up to its last full sentence when that keeps at
    least half of them, else up to a word boundary, with an ellipsis."""
    words = text.split()
    if len(words) <= budget:
        return " ".join(words)
    kept = words[:budget]
    for end in range(len(kept), max(budget // 2, 1) - 1, -1):
        word = kept[end - 1]
        closing = end >= 2 and _CLOSING.fullmatch(word) and _SENTENCE_END.search(kept[end - 2])
        if _SENTENCE_END.search(word) or closing:
            return " ".join(kept[:end])
    return " ".join(kept).rstrip(",;:—–-") + ELLIPSIS


def excerpt(blocks: Sequence[dict[str, Any]], words: int) -> Excerpt:
    """At most ``words`` words of ``blocks``; the blocks whole when they are no longer than that."""
    total = sum(block_words(block) for block in blocks)
    if total <= words:
        return Excerpt(blocks=list(blocks), truncated=False)
    kept: list[dict[str, Any]] = []
    budget = words
    for block in blocks:
        size = block_words(block)
        if size <= budget:
            kept.append(block)
            budget -= size
            continue
        kind = block.get("type")
        # A heading or a link cut in two says nothing; a paragraph or list entry can be cut.
        if kind == "paragraph" and budget >= 5:
            kept.append({"type": "paragraph", "text": cut_text(str(block["text"]), budget)})
        elif kind == "list" and budget >= 5:
            entries: list[str] = []
            for entry in block.get("items") or []:
                size = len(str(entry).split())
                if size <= budget:
                    entries.append(str(entry))
                    budget -= size
                    continue
                if budget >= 5:
                    entries.append(cut_text(str(entry), budget))
                break
            kept.append({"type": "list", "items": entries})
        break
    # A trailing heading would introduce nothing.
    while kept and kept[-1].get("type") == "heading":
        kept.pop()
    if not kept and blocks:
        first = blocks[0]
        text = str(first.get("text") or first.get("label") or " ".join(first.get("items") or []))
        kept = [{"type": "paragraph", "text": cut_text(text, words)}]
    return Excerpt(blocks=kept, truncated=True)
