"""Per-recipient slots of a rendered variant, and the one function that fills them.

A slot is the word ``__BULLETIN_<marker>_<NAME>__``, where the marker is a digest of the
edition keyed with a secret of the database (:func:`edition_marker`): nobody who writes
content can know it, so no news item, subject or name can place a slot of its own. Every
place that fills slots (the sender, reviewers' test sends, the staff preview, preview files)
goes through :func:`split` or :func:`fill`, which only ever replace this edition's slots, in
one pass, so a filled value is never read again. Placeholder-like words in content are
neutralised at ingest and at render (:mod:`bulletin.news.neutral`), and :func:`stray_words`
lets the checks refuse any that remain.

Each slot is a plain word (letters, digits, underscores) so that MJML, premailer, URL handling
and text wrapping all leave it untouched.
"""

from __future__ import annotations

import hashlib
import hmac
import html as html_lib
import re
from collections.abc import Mapping

from sqlalchemy.orm import Session

from bulletin.models.subscriber import stored_salt
from bulletin.news.neutral import PREFIX, neutralise_data, neutralise_text, neutralise_url

__all__ = [
    "ALL",
    "NAME",
    "PREFERENCES_URL",
    "UNSUBSCRIBE_URL",
    "edition_marker",
    "fill",
    "marker",
    "neutralise_data",
    "neutralise_text",
    "neutralise_url",
    "recipient_values",
    "slot",
    "split",
    "stray_words",
]

# " Marie" (with its leading space, HTML-escaped in the HTML part) or "" when no name is known.
NAME = "NAME"
UNSUBSCRIBE_URL = "UNSUBSCRIBE_URL"
PREFERENCES_URL = "PREFERENCES_URL"
ALL = (NAME, UNSUBSCRIBE_URL, PREFERENCES_URL)

_ANY_WORD = re.compile(re.escape(PREFIX) + r"[A-Za-z0-9_]*?__", re.IGNORECASE)


# Part of the render fingerprint, so renderings made with the older fixed placeholder words are stale.
SCHEME = "slots keyed per edition (2)"
SALT_KEY = "placeholder_salt"


def marker(salt: bytes, edition_id: int) -> str:
    """The marker of an edition's slots: unguessable without the salt, the same at every render."""
    digest = hmac.new(salt, f"bulletin placeholders {edition_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:12].upper()


def edition_marker(session: Session, edition_id: int) -> str:
    """The marker of an edition's slots in this database (its salt is made by the migrations)."""
    salt = stored_salt(session, SALT_KEY)
    assert salt is not None
    return marker(salt, edition_id)


def slot(marker: str, name: str) -> str:
    """The word a template holds where a recipient's value goes."""
    return f"{PREFIX}{marker}_{name}__"


def _slot_re(marker: str) -> re.Pattern[str]:
    return re.compile("(" + "|".join(re.escape(slot(marker, name)) for name in ALL) + ")")


def split(content: str, marker: str) -> list[str]:
    """``content`` cut at this marker's slots: text at even positions, slot names at odd ones."""
    pieces = _slot_re(marker).split(content)
    prefix = len(PREFIX) + len(marker) + 1
    return [piece if index % 2 == 0 else piece[prefix:-2] for index, piece in enumerate(pieces)]


def fill(content: str, marker: str, values: Mapping[str, str], *, html: bool) -> str:
    """Put each recipient value in its slot (HTML-escaped in an HTML part); nothing else is touched."""
    out = []
    for index, piece in enumerate(split(content, marker)):
        if index % 2 == 0:
            out.append(piece)
        else:
            value = values[piece]
            out.append(html_lib.escape(value, quote=True) if html else value)
    return "".join(out)


def recipient_values(name: str | None, unsubscribe_url: str, preferences_url: str) -> dict[str, str]:
    """The value of each slot for one recipient."""
    return {
        NAME: f" {name}" if name else "",
        UNSUBSCRIBE_URL: unsubscribe_url,
        PREFERENCES_URL: preferences_url,
    }


def sample_values(base_url: str, name: str | None, label: str) -> dict[str, str]:
    """Slot values for previews and test copies: links to pages that say they are samples."""
    base = base_url.rstrip("/")
    return recipient_values(name, f"{base}/unsubscribe/{label}", f"{base}/preferences/{label}")


def stray_words(content: str, marker: str) -> list[str]:
    """Placeholder-like words in ``content`` that are not this render's own slots."""
    own = {slot(marker, name) for name in ALL}
    return sorted({word for word in _ANY_WORD.findall(content) if word not in own})
