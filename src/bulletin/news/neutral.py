"""Placeholder words in news content made inert, while still reading the same.

The composer marks each per-recipient slot of a rendered variant with a word that starts
``__BULLETIN_`` (see :mod:`bulletin.compose.placeholders`). Text that arrives from outside (a
feed, a Markdown file, a title typed by staff) never keeps such a word: an invisible word
joiner goes between its two leading underscores in text, and in a URL the underscores are
percent-encoded (the same address by RFC 3986). Readers still see the word literally.
"""

from __future__ import annotations

import re
from typing import Any

PREFIX = "__BULLETIN_"
WORD_JOINER = "\u2060"
_PREFIX_RE = re.compile(re.escape(PREFIX), re.IGNORECASE)


def neutralise_text(value: str) -> str:
    """Text that shows the same but holds no placeholder word."""
    if "__" not in value:
        return value
    return _PREFIX_RE.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], value)


def neutralise_url(value: str) -> str:
    """A URL that means the same but holds no placeholder word (its leading underscores percent-encoded)."""
    if "__" not in value:
        return value
    return _PREFIX_RE.sub(lambda m: "%5F%5F" + m.group(0)[2:], value)


def neutralise_data(value: Any) -> Any:
    """:func:`neutralise_text` on every string inside lists and dicts (a news item's body blocks)."""
    if isinstance(value, str):
        return neutralise_text(value)
    if isinstance(value, list):
        return [neutralise_data(entry) for entry in value]
    if isinstance(value, dict):
        return {
            key: neutralise_url(entry) if key == "url" and isinstance(entry, str) else neutralise_data(entry)
            for key, entry in value.items()
        }
    return value


def has_placeholder_word(value: str) -> bool:
    return _PREFIX_RE.search(value) is not None
