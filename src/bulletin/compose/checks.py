"""Checks a rendered variant must pass before it can be approved or sent."""

from __future__ import annotations

import hashlib
import html as html_lib
from typing import Any
from urllib.parse import urlsplit

import lxml.html  # type: ignore[import-untyped]

from bulletin.app.links import PATHS, make_token
from bulletin.compose import placeholders
from bulletin.config import Settings

TEXT_WIDTH = 78
LAYOUT = "email/layout.mjml.j2"
TEXT = "email/bulletin.txt.j2"
INLINE_CSS = "email/inline.css"
PREHEADER_LENGTH = 140


def _placeholder_growth(settings: Settings, marker: str) -> dict[str, int]:
    """How many bytes each slot may grow by when filled for a recipient."""
    token = make_token("x" * 32, "unsubscribe", 10**9, "someone.with.a.long.name@example.org", "n" * 16)
    url_length = len(settings.web.base_url.rstrip("/")) + len(PATHS["preferences"]) + len(token)
    lengths = {
        placeholders.NAME: 40,
        placeholders.UNSUBSCRIBE_URL: url_length,
        placeholders.PREFERENCES_URL: url_length,
    }
    return {
        placeholders.slot(marker, name): length - len(placeholders.slot(marker, name))
        for name, length in lengths.items()
    }


def _hidden(element: Any) -> bool:
    while element is not None:
        style = (element.get("style") or "").replace(" ", "").lower()
        if "display:none" in style or "visibility:hidden" in style:
            return True
        element = element.getparent()
    return False


def _absolute(url: str, marker: str) -> bool:
    if url in (placeholders.slot(marker, name) for name in placeholders.ALL):
        return True
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return bool(parts.netloc)
    return parts.scheme == "mailto"


def check_variant(
    settings: Settings, html: str, text: str, preheader: str, marker: str, *, subject: str = ""
) -> list[str]:
    """Problems that forbid sending this variant, one sentence each."""
    problems = []
    # Only this render's own slots may be filled per recipient; any other placeholder-like word
    # (from content, or a template written for the old fixed placeholders) is refused.
    stray = placeholders.stray_words(subject + "\n" + html + "\n" + text, marker)
    if stray:
        problems.append(
            f"the content holds the placeholder word {stray[0]}: remove it from the news item, subject or template"
        )
    size = len(html.encode("utf-8")) + sum(
        html.count(placeholder) * growth for placeholder, growth in _placeholder_growth(settings, marker).items()
    )
    budget = settings.compose.max_html_bytes
    if size > budget:
        problems.append(
            f"HTML is {size / 1024:.1f} KB with links filled in, over the {budget / 1024:.0f} KB budget "
            "(Gmail clips larger messages): exclude some items"
        )
    root = lxml.html.document_fromstring(html)
    if not (root.get("lang") or "").strip():
        problems.append("the <html> element has no lang attribute")
    if not preheader.strip() or html_lib.escape(preheader, quote=False) not in html:
        problems.append("no preheader")
    for image in root.iter("img"):
        if not (image.get("alt") or "").strip():
            problems.append(f"image without alt text: {image.get('src')}")
        if not _absolute(image.get("src") or "", marker):
            problems.append(f"image address is not absolute: {image.get('src')!r}")
    for link in root.iter("a"):
        href = link.get("href")
        if href is not None and not _absolute(href, marker):
            problems.append(f"link is not absolute: {href!r}")
    unsubscribe_slot = placeholders.slot(marker, placeholders.UNSUBSCRIBE_URL)
    unsubscribe = [a for a in root.iter("a") if a.get("href") == unsubscribe_slot and a.text_content().strip()]
    if not any(not _hidden(a) for a in unsubscribe):
        problems.append("no visible unsubscribe link in the HTML part")
    if unsubscribe_slot not in text:
        problems.append("no unsubscribe link in the text part")
    body_text = " ".join(root.text_content().split())
    organisation = settings.organisation
    for what, value in (("address", organisation.address), ("contact address", organisation.contact_email)):
        if " ".join(value.split()) not in body_text:
            problems.append(f"the footer lacks the organisation's {what}")
    return problems


def content_hash(subject: str, html: str, text: str) -> str:
    """Hash of what a variant says, placeholders unfilled: approvals are locked to it."""
    digest = hashlib.sha256()
    for part in (subject, html, text):
        encoded = part.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.hexdigest()
