"""Preview files of rendered variants: HTML and text, an index page, optional screenshots.

Previews show what a reader sees, so the per-recipient placeholders are filled with sample
values (a sample name, links to the subscription pages marked "preview").
"""

from __future__ import annotations

import os
import shutil
import webbrowser
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine

from bulletin.app.editions import get_edition
from bulletin.compose import placeholders
from bulletin.compose.render import RenderedVariant, render_variants, shipped_templates_dir
from bulletin.compose.variants import plan_variants, variant_subscriber_counts
from bulletin.config import Settings
from bulletin.db import make_private_dir, reading
from bulletin.errors import BulletinError

WIDTHS = (600, 375)
CHROMIUM_ENV = "BULLETIN_CHROMIUM"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SAMPLE_NAME = "Camille"


@dataclass(frozen=True)
class PreviewFile:
    variant: RenderedVariant
    html: Path
    text: Path
    subscribers: int


def variant_slug(language: str, interests: str) -> str:
    """File name stem of a variant: ``fr-all`` or ``fr-cities+youth``."""
    return f"{language}-{interests.replace(',', '+') if interests else 'all'}"


def fill_placeholders(settings: Settings, content: str, marker: str, *, html: bool) -> str:
    """Fill the per-recipient slots with sample values for a preview."""
    values = placeholders.sample_values(settings.web.base_url, SAMPLE_NAME, "preview")
    return placeholders.fill(content, marker, values, html=html)


def preview_dir(settings: Settings, edition_id: int, out: str | None = None) -> Path:
    """Where an edition's previews go: ``--out`` or ``compose.preview_dir``/edition-ID."""
    if out:
        return Path(out).expanduser().resolve()
    return settings.resolve_path(settings.compose.preview_dir) / f"edition-{edition_id}"


def index_path(settings: Settings, edition_id: int, out: str | None = None) -> Path:
    """Where the index page of an edition's previews is written."""
    return preview_dir(settings, edition_id, out) / "index.html"


def write_preview(engine: Engine, settings: Settings, edition_id: int, *, out: str | None = None) -> Path:
    """Render every planned variant of an edition, write its previews and index page; return the index."""
    with reading(engine) as session:
        edition = get_edition(session, edition_id)
        counts = variant_subscriber_counts(session, settings)
        rendered = render_variants(session, settings, edition, plan_variants(session, settings, edition))
        folder = preview_dir(settings, edition_id, out)
        files = write_previews(settings, rendered, folder, counts)
        return write_index(settings, edition, files, folder)


def write_previews(
    settings: Settings,
    variants: Sequence[RenderedVariant],
    folder: Path,
    counts: Mapping[tuple[str, str], int],
) -> list[PreviewFile]:
    """Write each variant's HTML and text (placeholders filled with samples) into ``folder``."""
    try:
        make_private_dir(folder)
    except OSError as exc:
        raise BulletinError(f"cannot create the preview folder {folder}: {exc.strerror}") from None
    files = []
    for variant in variants:
        stem = variant_slug(variant.language, variant.interests)
        html_path, text_path = folder / f"{stem}.html", folder / f"{stem}.txt"
        _write(html_path, fill_placeholders(settings, variant.html, variant.marker, html=True))
        _write(text_path, fill_placeholders(settings, variant.text, variant.marker, html=False))
        files.append(PreviewFile(variant, html_path, text_path, counts.get((variant.language, variant.interests), 0)))
    return files


def _write(path: Path, content: str) -> None:
    # Previews show subscriber counts and unsent content: readable by their owner only.
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
    temporary.replace(path)


def _interest_labels(settings: Settings, language: str, interests: str) -> str:
    if not interests:
        return "all topics"
    labels = []
    for key in interests.split(","):
        try:
            labels.append(settings.interest(key).labels.get(language) or key)
        except KeyError:
            labels.append(key)
    return ", ".join(labels)


def write_index(settings: Settings, edition: Any, files: Sequence[PreviewFile], folder: Path) -> Path:
    """An index page showing each variant at 600 px and 375 px side by side, with its subscribers."""
    env = Environment(
        loader=FileSystemLoader(str(shipped_templates_dir())),
        autoescape=select_autoescape(enabled_extensions=("html.j2",)),
    )
    rows = [
        {
            "slug": f.html.stem,
            "html": f.html.name,
            "text": f.text.name,
            "language": f.variant.language,
            "topics": _interest_labels(settings, f.variant.language, f.variant.interests),
            "subject": f.variant.subject,
            "subscribers": f.subscribers,
            "item_count": f.variant.item_count,
            "size_kb": f"{f.variant.html_size / 1024:.1f}",
            "problems": f.variant.problems,
            "empty": f.variant.empty,
        }
        for f in files
    ]
    page = env.get_template("preview/index.html.j2").render(
        edition=edition,
        list_name=settings.organisation.list_name,
        rows=rows,
        widths=WIDTHS,
        total=sum(f.subscribers for f in files),
    )
    path = folder / "index.html"
    _write(path, page)
    return path


def open_in_browser(path: Path) -> None:
    """Open a preview file in the desktop's browser."""
    if not webbrowser.open(path.resolve().as_uri()):
        raise BulletinError(f"no web browser could be started; open {path} yourself")


# ---------------------------------------------------------------------------
# Chromium, through Playwright


def chromium_executable() -> str | None:
    """Chromium to drive: ``BULLETIN_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on PATH."""
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_unavailable_reason() -> str | None:
    """Why screenshots cannot be taken here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if chromium_executable() is None:
        return f"Chromium was not found (install Debian's 'chromium' or set {CHROMIUM_ENV})"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright's Browser)."""
    reason = browser_unavailable_reason()
    if reason:
        raise BulletinError(f"screenshots need a browser: {reason}")
    from playwright.sync_api import Error, sync_playwright

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_executable(), args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    except Error as exc:
        raise BulletinError(f"Chromium failed: {str(exc).splitlines()[0]}") from None


def take_screenshots(files: Sequence[PreviewFile]) -> list[Path]:
    """Save a full-page PNG of each variant at 600 px and at 375 px next to its HTML file."""
    shots = []
    with chromium() as browser:
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 900})
            try:
                for file in files:
                    page.goto(file.html.as_uri())
                    path = file.html.with_name(f"{file.html.stem}-{width}.png")
                    page.screenshot(path=str(path), full_page=True)
                    shots.append(path)
            finally:
                page.close()
    return shots


def preview_link(engine: Engine, settings: Settings, edition_id: int) -> str:
    """Write the edition's previews and return the address of their index."""
    index = write_preview(engine, settings, edition_id)
    return str(index)
