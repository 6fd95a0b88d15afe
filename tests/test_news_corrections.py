"""``news ingest --dry-run``, ``news split`` and ``news merge``: staff preview a page's split and
correct it, and the correction survives every later ingest of the page (real SQLite file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select

from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import reading
from bulletin.models import NewsCorrection, NewsItem

EXPORT = Path(__file__).parent / "fixtures" / "news_export"

FIRST = (
    "Le Centre anime un atelier sur la sécurité dans les transports\n\n"
    "Le 14 février, le Centre a animé un atelier réunissant une trentaine d’exploitants de réseaux de transport "
    "collectif autour de la prévention des incivilités dans les gares. Les échanges ont porté sur l’aménagement "
    "des lieux et la présence de médiateurs.\n\n"
)
# A real item whose title is too short to tell from a sub-heading: the splitter keeps it inside the first.
SECOND = (
    "Nouvelles recrues\n\n"
    "Le 3 février, deux analystes ont rejoint l’équipe de recherche du Centre pour travailler sur les politiques "
    "de prévention. Elles viennent d’une université partenaire et d’un observatoire régional.\n\n"
    "Le Centre leur souhaite la bienvenue."
)


@pytest.fixture
def run(settings: Settings, engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "bulletin.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n', encoding="utf-8")

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], env={"COLUMNS": "200"})

    return invoke


def titles(engine: Engine) -> list[str]:
    with reading(engine) as session:
        return list(session.scalars(select(NewsItem.title).order_by(NewsItem.id)))


def item_id(engine: Engine, title: str) -> int:
    with reading(engine) as session:
        found = session.scalar(select(NewsItem.id).where(NewsItem.title == title))
        assert found is not None, title
        return found


def test_dry_run_prints_the_items_with_date_origin_language_and_topics_and_writes_nothing(run, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    result = run("news", "ingest", str(EXPORT / "listing_es.txt"), "--as-of", "2026-03-01", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "listing_es.txt (text): 10 items" in result.output
    assert "  1. El Centro reúne a la policía municipal en torno a la mediación de barrio  [new]" in result.output
    assert "date 2026-02-10 (text: '10 de febrero') · language es (detected)" in result.output
    assert "topics cities (9.5), policing (4) (keywords)" in result.output
    assert "El 10 de febrero, el Centro reunió en Quebec a una cuarentena" in result.output
    assert "date 2021-12-08 (text: '8 de diciembre de 2021')" in result.output
    assert result.output.rstrip().endswith("Dry run: nothing was written.")
    with reading(engine) as session:
        assert session.scalar(select(func.count()).select_from(NewsItem)) == 0


def test_news_list_marks_dates_read_in_the_text_as_guessed_and_show_gives_the_keywords(run, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    run("news", "ingest", str(EXPORT / "listing_en.txt"), "--as-of", "2026-03-01")

    listed = run("news", "list")
    row = next(line for line in listed.output.splitlines() if "Review of the writing workshops" in line)
    assert "2025-11-04?" in row
    shown = run("news", "show", str(item_id(engine, "Review of the writing workshops offered to young people")))
    assert "(text, guessed)" in shown.output
    assert "Keywords:        youth 5.5: youth (1 in text), young people (title, 2 in text)" in shown.output


def test_a_split_survives_re_ingest_without_duplicates(run, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = tmp_path / "page.txt"
    page.write_text(FIRST + SECOND, encoding="utf-8")
    run("news", "ingest", str(page), "--as-of", "2026-03-01")
    assert titles(engine) == ["Le Centre anime un atelier sur la sécurité dans les transports"]
    first = item_id(engine, "Le Centre anime un atelier sur la sécurité dans les transports")

    result = run("news", "split", str(first), "--at", "Nouvelles recrues", "--as-of", "2026-03-01")

    assert result.exit_code == 0, result.output
    assert titles(engine) == ["Le Centre anime un atelier sur la sécurité dans les transports", "Nouvelles recrues"]
    with reading(engine) as session:
        before = session.get(NewsItem, first)
        recruits = session.get(NewsItem, item_id(engine, "Nouvelles recrues"))
        assert before is not None and recruits is not None
        assert [block["type"] for block in before.body] == ["paragraph"]
        assert recruits.body[-1] == {"type": "paragraph", "text": "Le Centre leur souhaite la bienvenue."}
        assert (recruits.published_at.date().isoformat(), recruits.date_origin) == ("2026-02-03", "text")

    again = run("news", "ingest", str(page), "--as-of", "2026-03-01")
    assert again.exit_code == 0, again.output
    # Added 0, updated 0, unchanged 2.
    assert "│     0 │       0 │         2 │" in again.output
    assert titles(engine) == ["Le Centre anime un atelier sur la sécurité dans les transports", "Nouvelles recrues"]
    # The page changes: the cut item is updated in place, nothing comes back whole.
    page.write_text(FIRST + SECOND.replace("deux analystes", "trois analystes"), encoding="utf-8")
    run("news", "ingest", str(page), "--as-of", "2026-03-01")
    assert titles(engine) == ["Le Centre anime un atelier sur la sécurité dans les transports", "Nouvelles recrues"]
    with reading(engine) as session:
        recruits = session.get(NewsItem, item_id(engine, "Nouvelles recrues"))
        assert recruits is not None and "trois analystes" in recruits.body[0]["text"] and recruits.changed


def test_a_merge_survives_re_ingest_and_the_merged_item_does_not_come_back(run, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = tmp_path / "page.txt"
    listing = (EXPORT / "listing_fr.txt").read_text(encoding="utf-8")
    page.write_text(listing, encoding="utf-8")
    run("news", "ingest", str(page), "--as-of", "2026-03-01")
    signature = item_id(engine, "Signature d’une entente avec une université du Mexique")
    report = item_id(engine, "Publication du rapport du forum sur la violence")

    result = run("news", "merge", str(signature), str(report), "--as-of", "2026-03-01")

    assert result.exit_code == 0, result.output
    assert len(titles(engine)) == 8 and "Publication du rapport du forum sur la violence" not in titles(engine)
    with reading(engine) as session:
        merged = session.get(NewsItem, signature)
        assert merged is not None
        assert {"type": "heading", "text": "Publication du rapport du forum sur la violence"} in merged.body
        # Re-tagged from the merged text: the report words weigh most.
        assert merged.topic_list == ["research"]
    for _ in range(2):
        again = run("news", "ingest", str(page), "--as-of", "2026-03-01")
        assert again.exit_code == 0, again.output
        assert "│     0 │       0 │         8 │" in again.output
        assert len(titles(engine)) == 8 and "Publication du rapport du forum sur la violence" not in titles(engine)
    # A dry run replays the correction too.
    preview = run("news", "ingest", str(page), "--as-of", "2026-03-01", "--dry-run")
    assert "8 items" in preview.output and f"already stored as #{signature}" in preview.output


def test_wrong_corrections_are_refused_with_one_line_and_change_nothing(run, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = tmp_path / "page.txt"
    page.write_text(FIRST + SECOND, encoding="utf-8")
    other = tmp_path / "other.txt"
    other.write_text((EXPORT / "listing_en.txt").read_text(encoding="utf-8"), encoding="utf-8")
    run("news", "ingest", str(page), str(other), "--as-of", "2026-03-01")
    first = item_id(engine, "Le Centre anime un atelier sur la sécurité dans les transports")
    english = item_id(engine, "Forum report on violence published")

    cases = [
        (("split", str(first), "--at", "Un titre absent"), f"news item {first} has no line 'Un titre absent'"),
        (
            ("split", str(first), "--at", "Le Centre leur souhaite la bienvenue."),
            "is the last line of news item",
        ),
        (("merge", str(first), str(english)), "come from different pages"),
        (("merge", str(first), str(first)), "give two different news items to merge"),
        (("split", "9999", "--at", "x"), "no news item 9999"),
    ]
    for args, message in cases:
        result = run("news", *args)
        assert result.exit_code != 0, args
        errors = [line for line in result.output.splitlines() if line.strip()]
        assert len(errors) == 1 and message in errors[0], result.output
        assert "Traceback" not in result.output
    with reading(engine) as session:
        assert session.scalar(select(func.count()).select_from(NewsCorrection)) == 0
    assert len(titles(engine)) == 10
