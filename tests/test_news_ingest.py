"""Ingest end to end into the real store (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from bulletin.config import Ingest, Settings
from bulletin.db import reading, transaction
from bulletin.errors import InvalidInput
from bulletin.models import NewsItem
from bulletin.news import store as store_module
from bulletin.news.curate import set_item_fields, tag_item
from bulletin.news.ingest import ingest_sources

FIXTURES = Path(__file__).parent / "fixtures" / "news"


def items(engine: Engine) -> list[NewsItem]:
    with reading(engine) as session:
        return list(session.scalars(select(NewsItem).order_by(NewsItem.id)))


def count(engine: Engine) -> int:
    with reading(engine) as session:
        return int(session.scalar(select(func.count()).select_from(NewsItem)) or 0)


def by_title(engine: Engine, title: str) -> NewsItem:
    with reading(engine) as session:
        item = session.scalar(select(NewsItem).where(NewsItem.title == title))
        assert item is not None, title
        return item


@pytest.fixture
def news_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "news"
    shutil.copytree(FIXTURES, folder)
    return folder


def test_three_shapes_ingest_into_one_store_and_a_second_run_changes_nothing(
    any_engine: Engine, any_settings: Settings, news_dir: Path
) -> None:
    first = ingest_sources(any_engine, any_settings, [str(news_dir)])

    kinds = {Path(o.source).name: o.kind for o in first.outcomes}
    assert kinds["listing_fr.txt"] == "text"
    assert kinds["report_en.md"] == "markdown"
    assert kinds["feed_fr.rss"] == "feed"
    assert kinds["feed_en.atom"] == "feed"
    listing = next(o for o in first.outcomes if o.source.endswith("listing_fr.txt"))
    assert (listing.added, listing.rejected, listing.error) == (12, 0, None)
    # no_title.md fails alone; the feed's entry without a title is rejected, its other entries go in.
    failed = {Path(o.source).name: o.error for o in first.failed}
    assert list(failed) == ["no_title.md"]
    assert "no title" in (failed["no_title.md"] or "")
    feed = next(o for o in first.outcomes if o.source.endswith("feed_fr.rss"))
    assert (feed.added, feed.rejected) == (2, 1)
    stored = count(any_engine)
    assert stored == first.added == 12 + 4 + 3 + 1 + 2 + 2 + 1 + 1

    second = ingest_sources(any_engine, any_settings, [str(news_dir)])

    assert (second.added, second.updated) == (0, 0)
    assert second.unchanged == first.added
    assert count(any_engine) == stored
    assert not any(item.changed for item in items(any_engine))


def test_a_changed_source_updates_its_item_in_place_and_flags_it(
    any_engine: Engine, any_settings: Settings, news_dir: Path
) -> None:
    listing = news_dir / "listing_fr.txt"
    ingest_sources(any_engine, any_settings, [str(listing)])
    before = by_title(any_engine, "Bilan de l'année 2024")
    others_before = {item.id: item.content_hash for item in items(any_engine) if item.id != before.id}

    listing.write_text(
        listing.read_text(encoding="utf-8").replace("publié neuf rapports", "publié dix rapports"), encoding="utf-8"
    )
    report = ingest_sources(any_engine, any_settings, [str(listing)])

    assert (report.added, report.updated, report.unchanged) == (0, 1, 11)
    after = by_title(any_engine, "Bilan de l'année 2024")
    assert after.id == before.id
    assert after.changed is True
    assert after.content_hash != before.content_hash
    assert "publié dix rapports" in after.body[0]["text"]
    assert {item.id: item.content_hash for item in items(any_engine) if item.id != before.id} == others_before


def test_touching_a_file_without_changing_it_changes_nothing(
    engine: Engine, settings: Settings, news_dir: Path
) -> None:
    article = news_dir / "article_en.txt"
    ingest_sources(engine, settings, [str(article)])
    [item] = items(engine)
    assert item.date_origin == "mtime"
    os.utime(article, (item.published_at.timestamp() + 86400, item.published_at.timestamp() + 86400))

    report = ingest_sources(engine, settings, [str(article)])

    assert (report.updated, report.unchanged) == (0, 1)
    [again] = items(engine)
    assert again.published_at == item.published_at
    assert again.changed is False


def test_bad_sources_fail_alone_with_one_clear_line(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_text("", encoding="utf-8")
    (bad / "blank.md").write_text("\n \n", encoding="utf-8")
    (bad / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (bad / "notxml.xml").write_text('{"this": "is json, not a feed"}', encoding="utf-8")
    (bad / "page.rss").write_text("<html><body><p>Not a feed</p></body></html>", encoding="utf-8")
    with (bad / "huge.txt").open("wb") as handle:
        handle.write(b"A title\n\n" + b"x" * (20 * 1024 * 1024))
    good = FIXTURES / "listing_es.txt"

    report = ingest_sources(engine, settings, [str(bad), str(good), str(tmp_path / "missing.txt")])

    errors = {Path(o.source).name: o.error for o in report.failed}
    assert errors == {
        "blank.md": "the file is empty",
        "empty.txt": "the file is empty",
        "huge.txt": "the file is 21.0 MB, more than ingest.max_bytes (10.0 MB)",
        "image.txt": "the file is binary, not text",
        "notxml.xml": errors["notxml.xml"],
        "page.rss": "not an RSS or Atom feed",
        "missing.txt": "no such file or folder",
    }
    assert (errors["notxml.xml"] or "").startswith("not an RSS or Atom feed: ")
    assert all("\n" not in (error or "") for error in errors.values())
    assert report.added == 3
    assert count(engine) == 3


def test_max_bytes_comes_from_the_settings(engine: Engine, settings: Settings) -> None:
    small = dataclasses.replace(settings, ingest=Ingest(max_bytes=1000))

    report = ingest_sources(engine, small, [str(FIXTURES / "listing_fr.txt")])

    assert report.failed[0].error == "the file is 0.0 MB, more than ingest.max_bytes (0.0 MB)"
    assert count(engine) == 0


def test_a_source_that_fails_while_storing_leaves_nothing_half_written(
    any_engine: Engine, any_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fifth item of the page fails after four were added in the same transaction.
    real_new_item = store_module._new_item
    calls = {"n": 0}

    def failing_on_the_fifth(fields):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if fields.source.endswith("listing_fr.txt") and calls["n"] == 5:
            raise OSError("disk full")
        return real_new_item(fields)

    monkeypatch.setattr(store_module, "_new_item", failing_on_the_fifth)
    report = ingest_sources(
        any_engine, any_settings, [str(FIXTURES / "listing_fr.txt"), str(FIXTURES / "listing_es.txt")]
    )

    [failed] = report.failed
    assert failed.source.endswith("listing_fr.txt")
    assert failed.error == "unexpected error, nothing stored from this source: OSError: disk full"
    assert (failed.added, failed.item_ids) == (0, [])
    assert {item.language for item in items(any_engine)} == {"es"}
    assert count(any_engine) == 3


def test_scripts_are_removed_and_titles_are_single_line(engine: Engine, settings: Settings) -> None:
    ingest_sources(engine, settings, [str(FIXTURES / "feed_fr.rss"), str(FIXTURES / "report_en.md")])

    for item in items(engine):
        assert "\n" not in item.title and "\r" not in item.title
        flat = repr(item.body)
        for needle in ("script", "evil.example.com", "javascript", "onclick", "<", "display: none"):
            assert needle not in flat, (needle, item.title)
    assert by_title(engine, "Atelier sur les violences faites aux femmes").language == "fr"


def test_item_date_comes_from_option_then_metadata_then_file_time(
    engine: Engine, settings: Settings, news_dir: Path
) -> None:
    article = news_dir / "article_en.txt"
    os.utime(article, (1_700_000_000, 1_700_000_000))
    ingest_sources(engine, settings, [str(article), str(news_dir / "listing_es.txt")])

    assert by_title(engine, "Safer Cities Network welcomes five new members").published_at == datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=UTC
    )
    assert by_title(engine, "Safer Cities Network welcomes five new members").date_origin == "mtime"
    foro = by_title(engine, "Foro internacional sobre la prevención de la violencia juvenil")
    # A written date is midnight in the schedule's time zone (America/Toronto by default).
    assert (foro.published_at, foro.date_origin) == (datetime(2025, 3, 12, 4, 0, tzinfo=UTC), "metadata")

    chosen = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    ingest_sources(engine, settings, [str(news_dir / "listing_en.txt")], date=chosen)
    review = by_title(engine, "Annual review of 2024")
    assert (review.published_at, review.date_origin) == (chosen, "option")


def test_language_from_source_then_option_then_detection(engine: Engine, settings: Settings) -> None:
    ingest_sources(engine, settings, [str(FIXTURES / "listing_en.txt"), str(FIXTURES / "report_en.md")])
    review = by_title(engine, "Annual review of 2024")
    assert (review.language, review.language_origin) == ("en", "detected")
    report = by_title(engine, "International Report 2025: cities and crime prevention")
    assert (report.language, report.language_origin) == ("en", "source")

    ingest_sources(engine, settings, [str(FIXTURES / "listing_es.txt"), str(FIXTURES / "informe_es.md")], lang="fr")
    foro = by_title(engine, "Foro internacional sobre la prevención de la violencia juvenil")
    # --lang is for sources that do not say; a plain-text page does not, so the option wins over detection.
    assert (foro.language, foro.language_origin) == ("fr", "option")
    informe = by_title(engine, "Informe internacional 2025: las ciudades y la prevención del delito")
    assert (informe.language, informe.language_origin) == ("es", "source")


def test_topics_from_source_categories_keywords_and_option(engine: Engine, settings: Settings) -> None:
    ingest_sources(engine, settings, [str(FIXTURES / "feed_fr.rss"), str(FIXTURES / "listing_en.txt")])

    rapport = by_title(engine, "Rapport international 2025 : les villes et la prévention")
    # "Sécurité urbaine" is the French label of the cities topic; "Non classé" matches nothing.
    assert (rapport.topics, rapport.topics_origin) == ("cities", "source")
    training = by_title(engine, "Online training: preventing cybercrime against older adults")
    # "online" and "cybercrime" in the title make it a cybercrime item; "police" and "report",
    # each once in the text, are too weak a sign of policing or research.
    assert (training.topic_list, training.topics_origin) == (["cybercrime"], "keywords")

    ingest_sources(engine, settings, [str(FIXTURES / "article_en.txt")], topics=["policing"])
    network = by_title(engine, "Safer Cities Network welcomes five new members")
    assert "policing" in network.topic_list
    assert "cities" in network.topic_list


def test_unknown_language_or_topic_is_refused_before_anything_is_read(engine: Engine, settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="unknown language 'de'"):
        ingest_sources(engine, settings, [str(FIXTURES)], lang="de")
    with pytest.raises(InvalidInput, match="unknown topic 'sports'"):
        ingest_sources(engine, settings, [str(FIXTURES)], topics=["sports"])
    assert count(engine) == 0


def test_the_same_story_from_two_sources_is_stored_once(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    copy = tmp_path / "copy.md"
    copy.write_text((FIXTURES / "report_en.md").read_text(encoding="utf-8"), encoding="utf-8")

    report = ingest_sources(engine, settings, [str(FIXTURES / "report_en.md"), str(copy)])

    assert (report.added, report.unchanged) == (1, 1)
    assert "already stored as item" in report.outcomes[1].notes[0]
    assert count(engine) == 1


def test_what_staff_set_survives_a_changed_source(any_engine: Engine, any_settings: Settings, news_dir: Path) -> None:
    listing = news_dir / "listing_en.txt"
    ingest_sources(any_engine, any_settings, [str(listing)])
    review = by_title(any_engine, "Annual review of 2024")
    with transaction(any_engine) as session:
        set_item_fields(session, any_settings, review.id, language="fr", title="Our year 2024")
        tag_item(session, any_settings, review.id, ["+research"])

    listing.write_text(
        listing.read_text(encoding="utf-8").replace("published nine reports", "published ten reports"),
        encoding="utf-8",
    )
    report = ingest_sources(any_engine, any_settings, [str(listing)])

    assert report.updated == 1
    after = by_title(any_engine, "Our year 2024")
    assert after.id == review.id
    assert (after.language, after.language_origin) == ("fr", "staff")
    # The keywords gave no clear topic ("cities" once in the text); staff added research.
    assert (after.topic_list, after.topics_origin) == (["research"], "staff")
    assert "published ten reports" in after.body[0]["text"]
    assert after.changed is True


def test_header_bound_fields_lose_cr_lf_and_control_characters(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "injected.md"
    source.write_text(
        '---\ntitle: "Forum 2025\\r\\nBcc: victim@example.org"\nlang: en\n'
        'summary: "One line\\rand another\\u0007"\nimage: https://img.example.org/a.png\n'
        'image_alt: "Alt\\ntext"\ntranslation_key: "key\\r\\n2"\n---\nBody text.\n',
        encoding="utf-8",
    )

    ingest_sources(engine, settings, [str(source)])

    [item] = items(engine)
    assert item.title == "Forum 2025 Bcc: victim@example.org"
    assert item.summary == "One line and another"
    assert item.image_alt == "Alt text"
    assert item.translation_key == "key 2"


def test_a_feed_file_in_another_encoding_is_read_with_its_declared_encoding(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    feed = tmp_path / "latin1.rss"
    feed.write_bytes(
        '<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>C</title>'
        "<item><title>Sécurité à l'école</title><guid>a1</guid><description>Un atelier pour les élèves.</description>"
        "</item></channel></rss>".encode("latin-1")
    )

    report = ingest_sources(engine, settings, [str(feed)])

    assert report.added == 1
    assert [item.title for item in items(engine)] == ["Sécurité à l'école"]
