"""The ``bulletin news`` commands, driven through click on a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import reading
from bulletin.models import NewsItem, NewsStatus

FIXTURES = Path(__file__).parent / "fixtures" / "news"


@pytest.fixture
def run(settings: Settings, engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "bulletin.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n', encoding="utf-8")

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], env={"COLUMNS": "200"})

    return invoke


def item_id(engine: Engine, start: str) -> int:
    with reading(engine) as session:
        found = session.scalar(select(NewsItem.id).where(NewsItem.title.startswith(start)))
        assert found is not None
        return found


def test_ingest_prints_a_table_per_source_and_fails_on_bad_sources(run, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "empty.txt"
    empty.write_text("")

    result = run("news", "ingest", str(FIXTURES / "listing_fr.txt"), str(empty), str(FIXTURES / "feed_fr.rss"))

    assert result.exit_code == 1
    assert "listing_fr.txt" in result.output
    assert "Forum international sur la prévention" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].endswith("empty.txt: the file is empty")
    assert "rejected: entry 3 has no title" in result.output
    assert "Traceback" not in result.output

    again = run("news", "ingest", str(FIXTURES / "listing_fr.txt"))
    assert again.exit_code == 0, again.output
    row = next(line for line in again.output.splitlines() if "listing_fr.txt" in line)
    assert row.split("│")[3:7] == ["     0 ", "       0 ", "        12 ", "        0 "]


def test_list_show_and_json(run, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    run(
        "news",
        "ingest",
        str(FIXTURES / "listing_es.txt"),
        str(FIXTURES / "report_en.md"),
        str(FIXTURES / "informe_es.md"),
    )

    listed = json.loads(run("news", "list", "--lang", "es", "--json").output)
    assert [entry["language"] for entry in listed] == ["es"] * 4
    assert {entry["date_origin"] for entry in listed} >= {"metadata"}
    # Items without a written date carry the file's time, so the period is closed at both ends.
    since = json.loads(run("news", "list", "--since", "2025-03-11", "--until", "2025-04-01", "--json").output)
    assert [entry["title"] for entry in since] == ["Foro internacional sobre la prevención de la violencia juvenil"]
    research = json.loads(run("news", "list", "--topic", "research", "--lang", "en", "--json").output)
    assert [entry["title"] for entry in research] == ["International Report 2025: cities and crime prevention"]
    assert all(
        "research" in entry["topics"]
        for entry in json.loads(run("news", "list", "--topic", "research", "--json").output)
    )
    assert json.loads(run("news", "list", "--topic", "drugs", "--json").output) == []

    report = item_id(engine, "International Report")
    shown = json.loads(run("news", "show", str(report), "--json").output)
    assert shown["translations"][0]["language"] == "es"
    assert shown["body"][1] == {"type": "heading", "text": "Key findings"}
    text = run("news", "show", str(report)).output
    assert "Translations:    es: #" in text
    assert "• Two thirds of the cities studied" in text

    missing = run("news", "show", "999")
    assert (missing.exit_code, missing.output.strip()) == (1, "Error: no news item 999")
    bad = run("news", "list", "--since", "yesterday-ish")
    assert bad.exit_code == 1 and "is not a date" in bad.output


def test_set_tag_link_exclude_include(run, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    run("news", "ingest", str(FIXTURES / "listing_en.txt"), str(FIXTURES / "listing_es.txt"))
    review = item_id(engine, "Annual review")
    foro = item_id(engine, "Foro internacional")
    forum = item_id(engine, "International forum")

    result = run("news", "set", str(review), "--lang", "fr", "--title", "Bilan\r\n2024", "--date", "2025-01-05")
    assert result.exit_code == 0, result.output
    assert run("news", "tag", str(review), "+youth", "-cities", "drugs", "+research").exit_code == 0
    # "-research" holds an "h": it must not be read as the -h help option.
    removed = run("news", "tag", str(review), "-research")
    assert removed.output.strip() == f"News item {review} topics: drugs, youth"
    assert run("news", "tag", str(review), "+sports").output.strip().startswith("Error: unknown topic 'sports'")
    assert run("news", "link", str(forum), str(foro)).exit_code == 0
    assert run("news", "exclude", str(review)).exit_code == 0
    assert run("news", "exclude", str(review)).exit_code == 1
    assert run("news", "set", str(forum), "--lang", "xx").output.strip().startswith("Error: unknown language 'xx'")

    with reading(engine) as session:
        item = session.get(NewsItem, review)
        assert item is not None
        assert (item.title, item.language, item.language_origin) == ("Bilan 2024", "fr", "staff")
        assert item.published_at.isoformat() == "2025-01-05T05:00:00+00:00"
        assert (item.topic_list, item.topics_origin) == (["drugs", "youth"], "staff")
        assert item.status == NewsStatus.EXCLUDED
        assert item.changed is True
        linked = session.get(NewsItem, forum)
        other = session.get(NewsItem, foro)
        assert linked is not None and other is not None
        assert linked.translation_key == other.translation_key is not None

    assert run("news", "include", str(review)).exit_code == 0
    with reading(engine) as session:
        item = session.get(NewsItem, review)
        assert item is not None and item.status == NewsStatus.NEW
