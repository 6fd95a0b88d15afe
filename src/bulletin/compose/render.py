"""Render an edition for each (language, interest set) its active subscribers have.

Pipeline for the HTML part: Jinja2 (autoescape on; news content only ever enters as data)
writes MJML from the templates, mjml-python turns it into responsive HTML, premailer inlines
``inline.css``. The plain-text part comes from its own template, wrapped at 78 columns.
Per-recipient parts are the placeholders of :mod:`bulletin.compose.placeholders`, so each variant is
rendered once, never once per subscriber.

Speed: a variant's items are a subset, in edition order, of the items shown in its language.
So the whole pipeline runs once per language on a document holding all of them, between
marker comments, and each variant is assembled from that document's head, its items' HTML
and its tail, then given its own preheader and topics line. The result is byte for byte what
the pipeline gives when run on the variant alone (a test checks this).
"""

from __future__ import annotations

import dataclasses
import hashlib
import html as html_lib
import importlib.metadata
import itertools
import json
import logging
import re
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bulletin import __version__
from bulletin.app.editions import Story, default_subject, edition_stories, last_day
from bulletin.compose import placeholders
from bulletin.compose.archive_urls import ServerLinks
from bulletin.compose.checks import check_variant, content_hash
from bulletin.compose.excerpt import excerpt
from bulletin.compose.variants import plan_variants, variant_key
from bulletin.config import Settings
from bulletin.errors import BulletinError, InvalidInput
from bulletin.i18n import catalog_path, translations
from bulletin.models import Edition, EditionVariant, NewsItem, utcnow
from bulletin.news.topics import topics_key

TEXT_WIDTH = 78
LAYOUT = "email/layout.mjml.j2"
TEXT = "email/bulletin.txt.j2"
INLINE_CSS = "email/inline.css"
PREHEADER_LENGTH = 140

# Stand-ins for the per-variant parts of a language document, swapped for each variant's own text
# (slots of the edition's marker, so no content can hold one).
_PREHEADER_SLOT = "VARIANT_PREHEADER"
_TOPICS_SLOT = "VARIANT_TOPICS"
_SUBJECT_SLOT = "VARIANT_SUBJECT"
_WEB_VERSION_SLOT = "VARIANT_WEB_VERSION"
# mjml's hiding of the preheader, and ours: display none, without a colour or tiny-font trick.
_MJML_PREVIEW_STYLE = (
    'style="display:none;font-size:1px;color:#ffffff;line-height:1px;'
    'max-height:0px;max-width:0px;opacity:0;overflow:hidden;"'
)
PREHEADER_STYLE = 'style="display:none;max-height:0;max-width:0;overflow:hidden;mso-hide:all;"'
_ITEMS_START = "<!--bulletin-items-->"
_ITEMS_END = "<!--/bulletin-items-->"
_ITEM_RE = re.compile(r"<!--bulletin-item:(\d+)-->.*?<!--/bulletin-item-->", re.DOTALL)
_MARKER_RE = re.compile(r"<!--/?bulletin-items?(?::\d+)?-->")
_HEAD_RE = re.compile(r"<!--.*?-->|<style(?=[\s>])", re.DOTALL)
_SAFE_SCHEMES = ("http", "https", "mailto")
_URL_SAFE_CHARS = ":/?#[]@!$&()*+,;=%~-._"


class RenderError(BulletinError):
    """The templates could not be rendered (a template error, invalid MJML)."""


@dataclass(frozen=True)
class RenderedVariant:
    """One variant, rendered once, with the per-recipient placeholders left in."""

    language: str
    interests: str
    subject: str
    preheader: str
    html: str
    text: str
    content_hash: str
    html_size: int
    item_count: int
    problems: list[str] = field(default_factory=list)
    # The marker of the per-recipient slots (bulletin.compose.placeholders).
    marker: str = ""

    @property
    def key(self) -> str:
        return variant_key(self.language, self.interests)

    @property
    def empty(self) -> bool:
        """A variant with no items is not sent; it is reported instead."""
        return self.item_count == 0


# ---------------------------------------------------------------------------
# Templates


def shipped_templates_dir() -> Path:
    """The templates shipped with bulletin: the repository's ``templates/`` or the installed copy."""
    repository = Path(__file__).resolve().parents[3] / "templates"
    if (repository / LAYOUT).is_file():
        return repository
    return Path(__file__).resolve().parents[1] / "_templates"


def template_dirs(settings: Settings) -> tuple[str, ...]:
    """Folders searched for templates: the configured one first, then the shipped ones."""
    dirs = []
    if settings.compose.templates_dir:
        custom = settings.resolve_path(settings.compose.templates_dir)
        if not custom.is_dir():
            raise RenderError(f"compose.templates_dir: {custom} is not a folder")
        dirs.append(str(custom))
    dirs.append(str(shipped_templates_dir()))
    return tuple(dirs)


def _wrap(value: Any, width: int = TEXT_WIDTH, indent: str = "", subsequent: str | None = None) -> str:
    return _wrapped(str(value), width, indent, indent if subsequent is None else subsequent)


@lru_cache(maxsize=8192)
def _wrapped(text: str, width: int, indent: str, subsequent: str) -> str:
    # Long words (URLs) are never broken: a link cut in two stops working.
    return textwrap.fill(
        " ".join(text.split()),
        width=width,
        initial_indent=indent,
        subsequent_indent=subsequent,
        break_long_words=False,
        break_on_hyphens=False,
    )


@lru_cache(maxsize=32)
def _environment(dirs: tuple[str, ...], language: str) -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(d) for d in dirs]),
        autoescape=select_autoescape(enabled_extensions=("mjml.j2", "html.j2"), default_for_string=True),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = _wrap
    # Looked up at each call, so an edited catalog is used without a restart.
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda message: translations(language).gettext(message),
        ngettext=lambda singular, plural, n: translations(language).ngettext(singular, plural, n),
        newstyle=True,
    )
    return env


def _template_sources(dirs: tuple[str, ...]) -> list[tuple[str, str]]:
    env = _environment(dirs, "en")
    assert env.loader is not None
    sources = []
    for name in sorted(env.list_templates(filter_func=lambda name: name.startswith("email/"))):
        source, _, _ = env.loader.get_source(env, name)
        sources.append((name, source))
    return sources


def render_fingerprint(settings: Settings) -> str:
    """Hash of the templates, catalogs, versions and settings that shape the rendering."""
    digest = hashlib.sha256()
    for name, source in _template_sources(template_dirs(settings)):
        digest.update(f"template {name}\0{source}\0".encode())
    for lang in settings.languages:
        path = catalog_path(lang)
        digest.update(f"catalog {lang}\0".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    versions = {name: _version(name) for name in ("mjml", "premailer", "babel", "jinja2", "lxml")}
    relevant = {
        "bulletin": __version__,
        "versions": versions,
        "organisation": dataclasses.asdict(settings.organisation),
        "base_url": settings.web.base_url,
        "languages": settings.languages,
        "default_language": settings.default_language,
        "interests": [dataclasses.asdict(interest) for interest in settings.interests],
        "fallback": settings.compose.fallback,
        "max_html_bytes": settings.compose.max_html_bytes,
        "excerpt_words": settings.compose.excerpt_words,
        "timezone": settings.schedule.timezone,
        "placeholders": placeholders.SCHEME,
    }
    digest.update(json.dumps(relevant, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------------
# What the templates receive


@dataclass(frozen=True)
class ItemView:
    """A news item as a template sees it: plain data in the reader's language."""

    key: int
    language: str
    title: str
    link: str | None
    image: str | None
    image_alt: str
    date: str
    fallback_note: str
    topic_labels: list[str]
    blocks: list[dict[str, Any]]
    # Where "Read more" goes (the item's own link, else its archive page); None when shown whole.
    read_more: str | None = None


def safe_url(value: str | None, base: str | None = None) -> str | None:
    """An absolute http(s) or mailto URL, or None for anything that could harm or cannot work.

    Relative URLs are resolved against ``base`` when it is absolute; otherwise they are kept so
    that the link check reports them. Quotes, spaces and angle brackets are percent-encoded.
    """
    if not value or not value.strip():
        return None
    url = value.strip()
    scheme = urlsplit(url).scheme.lower()
    if not scheme and base and urlsplit(base).scheme.lower() in ("http", "https"):
        url = urljoin(base, url)
        scheme = urlsplit(url).scheme.lower()
    if scheme and scheme not in _SAFE_SCHEMES:
        return None
    return quote(url, safe=_URL_SAFE_CHARS)


def _language_name(reader: str, language: str) -> str:
    try:
        name = Locale.parse(reader).languages.get(language)
    except (UnknownLocaleError, ValueError):
        name = None
    return name or language


def _direction(language: str) -> str:
    try:
        return "rtl" if Locale.parse(language).character_order == "right-to-left" else "ltr"
    except (UnknownLocaleError, ValueError):
        return "ltr"


def item_blocks(item: NewsItem) -> list[dict[str, Any]]:
    """The whole text of an item as blocks a template can write (unsafe links dropped)."""
    base = item.link if item.link else None
    blocks: list[dict[str, Any]] = []
    for block in item.body or []:
        kind = block.get("type")
        if kind == "list":
            entries = [str(entry) for entry in block.get("items") or [] if str(entry).strip()]
            if entries:
                blocks.append({"type": "list", "items": entries})
        elif kind == "link":
            url = safe_url(block.get("url"), base)
            label = str(block.get("label") or block.get("url") or "").strip()
            if label:
                blocks.append({"type": "link", "url": url, "label": label})
        elif kind in ("heading", "paragraph") and str(block.get("text") or "").strip():
            blocks.append({"type": kind, "text": str(block["text"])})
    # An item known by its summary only (a feed entry) shows that summary.
    if not blocks and item.summary and item.summary.strip():
        blocks.append({"type": "paragraph", "text": item.summary.strip()})
    return blocks


def _excerpt_of(settings: Settings, item: NewsItem, link: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """The blocks the email shows and where "Read more" goes (None: the item is shown whole)."""
    whole = item_blocks(item)
    cut = excerpt(whole, settings.compose.excerpt_words)
    web_link = link if link and urlsplit(link).scheme in ("http", "https") else None
    if cut.truncated:
        return cut.blocks, web_link or ServerLinks(settings.web.base_url).item(item.id)
    # A summary without a body stands for a story told in full at its link.
    body_missing = not any(str(block.get("text") or block.get("items") or "").strip() for block in item.body or [])
    return cut.blocks, web_link if body_missing else None


def choose_version(settings: Settings, story: Story, language: str) -> NewsItem | None:
    """The version of a story a reader of ``language`` gets, per the fallback setting."""
    included = story.included
    for item in included:
        if item.language == language:
            return item
    if settings.compose.fallback == "skip" or not included:
        return None
    return included[0]


def item_view(settings: Settings, story: Story, item: NewsItem, reader: str) -> ItemView:
    """An item as the templates of a reader of ``reader`` see it, with its excerpt."""
    link = safe_url(item.link)
    zone = ZoneInfo(settings.schedule.timezone)
    labels = [
        interest.labels.get(reader) or interest.key for interest in settings.interests if interest.key in story.topics
    ]
    note = ""
    if item.language != reader:
        note = translations(reader).gettext("(in %(language)s)") % {"language": _language_name(reader, item.language)}
    image = safe_url(item.image, link)
    blocks, read_more = _excerpt_of(settings, item, link)
    # Content never holds a slot: placeholder-like words are made inert and shown as they are.
    text, url = placeholders.neutralise_text, placeholders.neutralise_url
    return ItemView(
        key=item.id,
        language=item.language,
        title=text(item.title.strip()),
        link=url(link) if link else None,
        image=url(image) if image else None,
        image_alt=text((item.image_alt or "").strip() or item.title.strip()),
        date=format_date(item.published_at.astimezone(zone).date(), format="long", locale=reader),
        fallback_note=note,
        topic_labels=[text(label) for label in labels],
        blocks=placeholders.neutralise_data(blocks),
        read_more=url(read_more) if read_more else None,
    )


def _preheader(items: Sequence[ItemView]) -> str:
    text = " · ".join(item.title for item in items)
    if len(text) <= PREHEADER_LENGTH:
        return text
    cut = text[: PREHEADER_LENGTH - 1].rsplit(" ", 1)[0].rstrip(" ·")
    return cut + "…"


def _topics_line(settings: Settings, language: str, interests: str) -> str:
    catalog = translations(language)
    keys = [key for key in interests.split(",") if key]
    if not keys:
        return catalog.gettext("You receive the news on every topic.")
    labels = [settings.interest(key).labels.get(language) or key for key in keys]
    return catalog.gettext("You receive the news on: %(topics)s.") % {"topics": ", ".join(labels)}


def intro_paragraphs(text: str) -> list[str]:
    return [" ".join(part.split()) for part in re.split(r"\n\s*\n", text.strip()) if part.strip()]


# ---------------------------------------------------------------------------
# MJML -> HTML -> inlined CSS


def mjml_to_email_html(mjml_source: str, inline_css: str) -> str:
    """Turn MJML into email HTML with ``inline_css`` inlined, keeping MJML's own head styles as they are."""
    from mjml import mjml_to_html
    from premailer import Premailer

    try:
        result = mjml_to_html(mjml_source)
    except Exception as exc:  # mjml-python raises plain exceptions on malformed input
        raise RenderError(f"the email template does not produce valid MJML: {exc}") from None
    if result.errors:
        raise RenderError("MJML: " + "; ".join(str(e) for e in result.errors))
    document = result.html.replace("<!doctype html>", "<!DOCTYPE html>", 1)
    # mjml hides the preheader with white 1px text, which spam filters read as hidden text
    # (SpamAssassin's HTML_FONT_LOW_CONTRAST): hide it without colour or size tricks instead.
    document = document.replace(_MJML_PREVIEW_STYLE, PREHEADER_STYLE, 1)
    # MJML's head styles (resets, media queries) stay in <head> untouched: inlining them would only
    # bloat every element. premailer inlines our inline.css and drops the marker attribute again.
    head_end = document.find("</head>")
    head = _HEAD_RE.sub(
        lambda m: m.group(0) if m.group(0).startswith("<!--") else '<style data-premailer="ignore"',
        document[:head_end],
    )
    document = head + document[head_end:]
    premailer = Premailer(
        document,
        css_text=inline_css,
        strip_important=False,
        disable_validation=True,
        disable_basic_attributes=["align", "valign", "bgcolor", "width", "height"],
        align_floating_images=False,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(premailer.transform(pretty_print=False))


@dataclass
class _LanguageDocument:
    """A language's rendered HTML cut around its items, to assemble any subset of them."""

    head: str
    before_first: str
    between: str
    after_last: str
    tail: str
    items: dict[int, str]

    def assemble(self, keys: Iterable[int]) -> str:
        parts = [self.items[key] for key in keys]
        body = self.before_first + self.between.join(parts) + self.after_last if parts else self.before_first
        return _MARKER_RE.sub("", self.head + body + self.tail)


def _split(document: str) -> _LanguageDocument:
    start = document.find(_ITEMS_START)
    end = document.find(_ITEMS_END)
    if start < 0 or end < start:
        raise RenderError(f"{LAYOUT} must keep the {_ITEMS_START} and {_ITEMS_END} markers around its items")
    head, region, tail = document[:start], document[start:end], document[end:]
    matches = list(_ITEM_RE.finditer(region))
    items = {int(m.group(1)): m.group(0) for m in matches}
    if not matches:
        return _LanguageDocument(head, region, "", "", tail, {})
    gaps = [region[a.end() : b.start()] for a, b in itertools.pairwise(matches)]
    if len(set(gaps)) > 1:
        raise RenderError(f"{LAYOUT}: the items are not separated uniformly; keep each item between its markers")
    return _LanguageDocument(
        head=head,
        before_first=region[: matches[0].start()],
        between=gaps[0] if gaps else "",
        after_last=region[matches[-1].end() :],
        tail=tail,
        items=items,
    )


# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# Rendering


class EditionRenderer:
    """Renders the variants of one edition, sharing the work between variants of a language."""

    def __init__(self, session: Session, settings: Settings, edition: Edition) -> None:
        self.settings = settings
        self.edition = edition
        self.stories = edition_stories(session, settings, edition)
        self.dirs = template_dirs(settings)
        self.marker = placeholders.edition_marker(session, edition.id)
        self._documents: dict[str, _LanguageDocument] = {}
        self._views: dict[str, list[tuple[Story, ItemView]]] = {}
        self._inline_css: str | None = None

    def _env(self, language: str) -> Environment:
        return _environment(self.dirs, language)

    def views(self, language: str) -> list[tuple[Story, ItemView]]:
        """Every item a reader of ``language`` may get, in edition order."""
        if language not in self._views:
            views = []
            for story in self.stories:
                item = choose_version(self.settings, story, language)
                if item is not None:
                    views.append((story, item_view(self.settings, story, item, language)))
            self._views[language] = views
        return self._views[language]

    def select(self, language: str, interests: str) -> list[ItemView]:
        """The items of a variant: those on any of its interests ("" = every item)."""
        wanted = {key for key in interests.split(",") if key}
        return [view for story, view in self.views(language) if not wanted or story.topics & wanted]

    def context(
        self,
        language: str,
        items: Sequence[ItemView],
        preheader: str,
        topics_line: str,
        web_version_url: str | None = None,
    ) -> dict[str, Any]:
        settings = self.settings
        organisation = settings.organisation
        website = placeholders.neutralise_url(safe_url(organisation.website) or organisation.website)
        text = placeholders.neutralise_text
        return {
            "lang": language,
            "direction": _direction(language),
            "subject": self.subject(language),
            "preheader": preheader,
            "topics_line": topics_line,
            "list_name": text(organisation.list_name),
            "organisation": {
                "name": text(organisation.name),
                "address": text(organisation.address),
                "contact_email": text(organisation.contact_email),
                "website": website,
                "website_label": re.sub(r"^https?://", "", website).rstrip("/"),
            },
            "edition_date": format_date(last_day(settings, self.edition.period_end), format="long", locale=language),
            "intro_paragraphs": [
                text(paragraph) for paragraph in intro_paragraphs((self.edition.intros or {}).get(language, ""))
            ],
            "items": list(items),
            "name_placeholder": placeholders.slot(self.marker, placeholders.NAME),
            "unsubscribe_url": placeholders.slot(self.marker, placeholders.UNSUBSCRIBE_URL),
            "preferences_url": placeholders.slot(self.marker, placeholders.PREFERENCES_URL),
            "web_version_url": web_version_url or placeholders.slot(self.marker, _WEB_VERSION_SLOT),
            "archive_url": self.settings.web.base_url.rstrip("/") + "/archive/",
        }

    def subject(self, language: str) -> str:
        return placeholders.neutralise_text(edition_subject(self.settings, self.edition, language))

    def _render_template(self, language: str, name: str, context: dict[str, Any]) -> str:
        try:
            return self._env(language).get_template(name).render(context)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" line {line}" if line else ""
            raise RenderError(f"template {getattr(exc, 'name', None) or name}{where}: {exc.message}") from None

    def inline_css(self) -> str:
        if self._inline_css is None:
            env = self._env(self.settings.default_language)
            assert env.loader is not None
            try:
                self._inline_css = env.loader.get_source(env, INLINE_CSS)[0]
            except TemplateError:
                raise RenderError(f"{INLINE_CSS} is missing from the templates") from None
        return self._inline_css

    def web_version_url(self, language: str, interests: str) -> str:
        """The public page of a variant, linked from its email as "view in browser"."""
        return ServerLinks(self.settings.web.base_url).web_version(self.edition.id, language, interests)

    def html_of(
        self,
        language: str,
        items: Sequence[ItemView],
        preheader: str,
        topics_line: str,
        web_version_url: str | None = None,
    ) -> str:
        """The whole pipeline on one document (used per language, and by tests on one variant)."""
        context = self.context(language, items, preheader, topics_line, web_version_url)
        # MJML copies mj-title into an aria-label attribute after decoding its quotes, so the
        # subject goes in after MJML, escaped for an attribute.
        title = placeholders.slot(self.marker, _SUBJECT_SLOT)
        context["subject"] = title
        mjml_source = self._render_template(language, LAYOUT, context)
        html = mjml_to_email_html(mjml_source, self.inline_css())
        return html.replace(title, html_lib.escape(self.subject(language), quote=True))

    def document(self, language: str) -> _LanguageDocument:
        if language not in self._documents:
            items = [view for _, view in self.views(language)]
            html = self.html_of(
                language,
                items,
                placeholders.slot(self.marker, _PREHEADER_SLOT),
                placeholders.slot(self.marker, _TOPICS_SLOT),
            )
            self._documents[language] = _split(html)
        return self._documents[language]

    def render(self, language: str, interests: str) -> RenderedVariant:
        settings = self.settings
        if language not in settings.languages:
            raise InvalidInput(f"{language!r} is not one of the configured languages ({', '.join(settings.languages)})")
        unknown = [key for key in interests.split(",") if key and key not in settings.interest_keys]
        if unknown:
            raise InvalidInput(f"unknown topic {unknown[0]!r} (topics are {', '.join(settings.interest_keys)})")
        interests = topics_key(interests.split(","))
        items = self.select(language, interests)
        preheader = _preheader(items)
        topics_line = placeholders.neutralise_text(_topics_line(settings, language, interests))
        web_version_url = self.web_version_url(language, interests)
        html = (
            self.document(language)
            .assemble(item.key for item in items)
            .replace(placeholders.slot(self.marker, _PREHEADER_SLOT), html_lib.escape(preheader, quote=False))
            .replace(placeholders.slot(self.marker, _TOPICS_SLOT), html_lib.escape(topics_line, quote=False))
            .replace(placeholders.slot(self.marker, _WEB_VERSION_SLOT), html_lib.escape(web_version_url, quote=True))
        )
        context = self.context(language, items, preheader, topics_line, web_version_url)
        text = self._render_template(language, TEXT, context)
        text = _tidy_text(text)
        subject = self.subject(language)
        problems = check_variant(settings, html, text, preheader, self.marker, subject=subject) if items else []
        return RenderedVariant(
            language=language,
            interests=interests,
            subject=subject,
            preheader=preheader,
            html=html,
            text=text,
            content_hash=content_hash(subject, html, text),
            html_size=len(html.encode("utf-8")),
            item_count=len(items),
            problems=problems,
            marker=self.marker,
        )


def edition_subject(settings: Settings, edition: Edition, language: str) -> str:
    """The subject of an edition in a language: the one staff wrote, else the default one."""
    subjects = edition.subjects or {}
    if language in subjects and subjects[language].strip():
        return subjects[language].strip()
    return default_subject(settings, language, edition.period_end)


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n"


def render_variant(
    session: Session, settings: Settings, edition: Edition, language: str, interests: str
) -> RenderedVariant:
    """Render one variant (no writes)."""
    return EditionRenderer(session, settings, edition).render(language, interests)


def render_variants(
    session: Session, settings: Settings, edition: Edition, variants: Iterable[tuple[str, str]] | None = None
) -> list[RenderedVariant]:
    """Render the given variants (default: the planned ones) of an edition (no writes)."""
    renderer = EditionRenderer(session, settings, edition)
    pairs = plan_variants(session, settings, edition) if variants is None else list(variants)
    return [renderer.render(language, interests) for language, interests in pairs]


def store_variants(session: Session, settings: Settings, edition: Edition, rendered: Sequence[RenderedVariant]) -> None:
    """Save rendered variants (upsert by language and interests), drop the ones no longer planned."""
    existing = {
        (v.language, v.interests): v
        for v in session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition.id))
    }
    keep = {(v.language, v.interests) for v in rendered}
    stale = [row.id for key, row in existing.items() if key not in keep]
    if stale:
        session.execute(delete(EditionVariant).where(EditionVariant.id.in_(stale)))
    now = utcnow()
    for variant in rendered:
        row = existing.get((variant.language, variant.interests))
        if row is None:
            row = EditionVariant(edition_id=edition.id, language=variant.language, interests=variant.interests)
            session.add(row)
        row.subject = variant.subject
        row.preheader = variant.preheader
        row.html = variant.html
        row.text = variant.text
        row.content_hash = variant.content_hash
        row.html_size = variant.html_size
        row.item_count = variant.item_count
        row.problems = "\n".join(variant.problems)
        row.rendered_at = now
    edition.render_fingerprint = render_fingerprint(settings)
    session.flush()


def render_edition(session: Session, settings: Settings, edition: Edition) -> list[RenderedVariant]:
    """Render every planned variant and store them in ``edition_variants``."""
    rendered = render_variants(session, settings, edition)
    store_variants(session, settings, edition, rendered)
    return rendered
