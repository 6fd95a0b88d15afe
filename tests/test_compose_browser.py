"""In headless Chromium: no variant scrolls sideways at 375 px; screenshots at both widths."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from bulletin.app.editions import create_edition, get_edition
from bulletin.cli import cli
from bulletin.compose import preview
from bulletin.compose.render import render_variants
from bulletin.config import Settings
from bulletin.db import reading, transaction

from .compose_fixtures import NOW, add_news, sample_news
from .factories import add_subscriber

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_reason = preview.browser_unavailable_reason()
requires_browser = pytest.mark.skipif(_reason is not None, reason=f"browser tests need Chromium: {_reason}")


def stressful_edition(engine: Engine, settings: Settings) -> int:
    """Sample news plus content that tends to break narrow layouts, and subscribers of many variants."""
    with transaction(engine) as session:
        sample_news(session)
        add_news(
            session,
            title="Unmot" * 30,
            language="fr",
            topics="research",
            summary="https://www.example.org/" + "a-very-long-path-segment-without-spaces" * 4,
            link="https://www.example.org/fr/" + "x" * 200,
            image="https://www.example.org/images/wide.jpg",
            image_alt="Une image large",
        )
        add_news(
            session,
            title="Listes et liens",
            language="es",
            topics="cities,research",
            body=[
                {"type": "heading", "text": "Encabezado " * 6},
                {"type": "list", "items": ["Elemento" * 20, "Otro"]},
                {
                    "type": "link",
                    "url": "https://www.example.org/" + "b" * 150,
                    "label": "https://www.example.org/" + "b" * 150,
                },
            ],
        )
        number = itertools.count()
        for language in settings.languages:
            for interests in ["", "youth", "cities,research", "cybercrime,research,youth"]:
                add_subscriber(session, f"r{next(number)}@example.org", language, interests)
        return create_edition(
            session, settings, since=NOW - timedelta(days=10), until=NOW, intros={"fr": "Introduction " * 40}
        ).id


@requires_browser
def test_no_variant_scrolls_sideways_at_375_px(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    edition_id = stressful_edition(engine, settings)
    with reading(engine) as session:
        variants = render_variants(session, settings, get_edition(session, edition_id))
    assert len(variants) == 12
    files = preview.write_previews(settings, variants, tmp_path, {})
    with preview.chromium() as browser:
        for width in (375, 600):
            page = browser.new_page(viewport={"width": width, "height": 800})
            # Remote images are not fetched: the test stays offline and the layout does not depend on them.
            page.route("http*://**", lambda route: route.abort())
            for file in files:
                page.goto(file.html.as_uri())
                scroll_width = page.evaluate("document.documentElement.scrollWidth")
                assert scroll_width <= width, f"{file.html.name} at {width} px scrolls: {scroll_width} px wide"
            page.close()


@requires_browser
def test_preview_screenshots_at_both_widths(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    edition_id = stressful_edition(engine, settings)
    config = tmp_path / "bulletin.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n', encoding="utf-8")
    out = tmp_path / "shots"
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config),
            "edition",
            "preview",
            str(edition_id),
            "--lang",
            "es",
            "--screenshots",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for width in (600, 375):
        png = out / f"es-all-{width}.png"
        assert str(png) in result.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_screenshots_without_a_browser_fail_with_one_line(
    engine: Engine, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with transaction(engine) as session:
        sample_news(session)
        edition_id = create_edition(session, settings, since=NOW - timedelta(days=10), until=NOW).id
    monkeypatch.setenv(preview.CHROMIUM_ENV, str(tmp_path / "no-chromium-here"))
    config = tmp_path / "bulletin.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n', encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["--config", str(config), "edition", "preview", str(edition_id), "--screenshots", "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "--screenshots needs a browser" in result.output
    assert not out.exists(), "nothing is written when the request cannot be met"
