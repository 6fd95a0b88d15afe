"""The edition commands through the real CLI: create, show, items, render, preview."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.models import Edition, EditionVariant

from .compose_fixtures import NOW, make_edition, sample_news
from .factories import add_subscriber


@pytest.fixture
def config(settings: Settings, engine: Engine, tmp_path: Path) -> Path:
    path = tmp_path / "bulletin.toml"
    path.write_text(
        f'[database]\nurl = "{settings.database.url}"\n[compose]\npreview_dir = "previews"\n', encoding="utf-8"
    )
    return path


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def test_create_with_subjects_and_intros_per_language(config: Path, engine: Engine) -> None:
    with transaction(engine) as session:
        sample_news(session)
        add_subscriber(session, "ana@example.org", "es", "youth")
    since = (NOW - timedelta(days=10)).date().isoformat()
    until = NOW.date().isoformat()
    result = run(
        config, "edition", "create", "--since", since, "--until", until,
        "--subject-fr", "Les nouvelles de mars", "--intro-es=Buenas noticias.", "--subject-en", "March news",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Created edition 1 (draft): 3 stories, 5 news items" in result.output
    with reading(engine) as session:
        edition = session.get(Edition, 1)
        assert edition is not None
        assert edition.subjects["fr"] == "Les nouvelles de mars" and edition.subjects["en"] == "March news"
        assert edition.intros == {"es": "Buenas noticias."}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subject-de", "Hallo"], "--subject-de: 'de' is not one of the configured languages"),
        (["--sinse", "2025-01-01"], "no such option: --sinse"),
        (["--since", "March"], "'March' is not a date"),
        (["--subject-fr"], "--subject-fr needs a text"),
    ],
)
def test_create_refuses_bad_input_with_one_line(config: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["--config", str(config), "edition", "create", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_show_lists_variants_with_subscribers_sizes_and_empty_ones(
    config: Path, engine: Engine, settings: Settings
) -> None:
    edition_id = make_edition(engine, settings)
    with transaction(engine) as session:
        add_subscriber(session, "drugs@example.org", "en", "drugs")
    result = run(config, "edition", "show", str(edition_id))
    assert result.exit_code == 0, result.output
    assert "fr · all topics" in result.output and "es · youth" in result.output
    assert "not sent: no items" in result.output
    assert "1 variant without items will not be sent (1 subscriber)." in result.output
    assert "Stored rendering: none" in result.output

    data = json.loads(run(config, "edition", "show", str(edition_id), "--json").output)
    variants = {v["key"]: v for v in data["variants"]}
    assert variants["fr|"]["subscribers"] == 2 and variants["fr|"]["items"] == 3
    assert variants["en|drugs"]["sent"] is False
    assert variants["es|youth"]["html_size"] > 5000
    assert [len(story["items"]) for story in data["stories"]] == [1, 1, 3]

    assert run(config, "edition", "render", str(edition_id)).exit_code == 0
    with reading(engine) as session:
        assert len(session.scalars(select(EditionVariant)).all()) == 5
    assert "Stored rendering: up to date" in run(config, "edition", "show", str(edition_id)).output
    missing = CliRunner().invoke(cli, ["--config", str(config), "edition", "show", "77"])
    assert missing.exit_code == 1 and "no edition 77" in missing.output


def test_items_lists_and_changes_the_order(config: Path, engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    listing = run(config, "edition", "items", str(edition_id)).output.splitlines()
    assert listing[0].startswith("  1  #") and "Online fraud" in listing[0]
    youth_en = next(line for line in listing if "Young people" in line).split("#")[1].split()[0]
    changed = run(config, "edition", "items", str(edition_id), "--move", youth_en, "1", "--exclude", youth_en)
    assert changed.exit_code == 0, changed.output
    lines = changed.output.splitlines()
    assert lines[0].startswith("  1") and "Les jeunes" in lines[0]
    assert "Young people" in lines[1] and lines[1].endswith("excluded")
    bad = CliRunner().invoke(cli, ["--config", str(config), "edition", "items", str(edition_id), "--move", "1", "x"])
    assert bad.exit_code == 2


def test_preview_writes_files_and_an_index(config: Path, engine: Engine, settings: Settings, tmp_path: Path) -> None:
    edition_id = make_edition(engine, settings)
    result = run(config, "edition", "preview", str(edition_id), "--lang", "fr", "--interests", "youth,cities")
    assert result.exit_code == 0, result.output
    html = tmp_path / "previews" / f"edition-{edition_id}" / "fr-cities+youth.html"
    assert str(html) in result.output.splitlines()
    content = html.read_text(encoding="utf-8")
    assert "Bonjour Camille," in content and "__BULLETIN_" not in content
    assert "https://bulletin.example.org/unsubscribe/preview" in content
    assert "Bonjour Camille," in html.with_suffix(".txt").read_text(encoding="utf-8")

    out = tmp_path / "all"
    result = run(config, "edition", "preview", str(edition_id), "--all", "--out", str(out))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["index.html", "fr-all.html", "fr-all.txt", "fr-cities+youth.html", "fr-cities+youth.txt",
         "en-all.html", "en-all.txt", "es-youth.html", "es-youth.txt"]
    )  # fmt: skip
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.count('<iframe src="fr-all.html" width="600"') == 1
    assert index.count('<iframe src="fr-all.html" width="375"') == 1
    assert "4 variants for 5 subscribers" in index and "2 subscribers · 3 items" in index

    refused = CliRunner().invoke(
        cli, ["--config", str(config), "edition", "preview", str(edition_id), "--all", "--lang", "fr"]
    )
    assert refused.exit_code == 1 and "leave out --lang" in refused.output
