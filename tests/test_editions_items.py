"""Editions: the period's news, stories grouped across languages, ordering and exclusion."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from bulletin.app.editions import (
    create_edition,
    edition_stories,
    exclude_item,
    get_edition,
    include_item,
    move_item,
    story_edits,
)
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import Conflict, InvalidInput, NotFound
from bulletin.models import EditionStatus, NewsStatus

from .compose_fixtures import NOW, add_news, make_edition, sample_news


def story_titles(engine: Engine, settings: Settings, edition_id: int) -> list[list[str]]:
    with reading(engine) as session:
        stories = edition_stories(session, settings, get_edition(session, edition_id))
        return [
            [f"{v.item.language}:{v.item.title}" + (" (excluded)" if v.excluded else "") for v in s.versions]
            for s in stories
        ]


def test_create_gathers_the_period_newest_story_first_with_versions_together(
    any_engine: Engine, any_settings: Settings
) -> None:
    with transaction(any_engine) as session:
        items = sample_news(session)
        add_news(session, title="Trop ancien", language="fr", published_at=NOW - timedelta(days=40))
        edition = create_edition(
            session, any_settings, since=NOW - timedelta(days=10), until=NOW, subjects={"fr": "Les nouvelles"}
        )
        edition_id = edition.id
        assert edition.status == EditionStatus.DRAFT
        assert edition.subjects["fr"] == "Les nouvelles"
        # Languages without a subject get the list name and the date, in their language.
        assert edition.subjects["en"] == "Bulletin of March 20, 2025"
        assert edition.subjects["es"] == "Bulletin del 20 de marzo de 2025"
        assert items["youth-fr"].status == NewsStatus.IN_EDITION
    assert story_titles(any_engine, any_settings, edition_id) == [
        ["en:Online fraud against older people"],
        ["fr:Sécurité dans les quartiers"],
        ["fr:Les jeunes et la prévention", "en:Young people and prevention", "es:Los jóvenes y la prevención"],
    ]


def test_default_period_starts_where_the_previous_edition_ended(engine: Engine, settings: Settings) -> None:
    first_id = make_edition(engine, settings)
    with transaction(engine) as session:
        later = add_news(session, title="Nouvelle suivante", language="fr", published_at=NOW + timedelta(hours=2))
        second = create_edition(session, settings, until=NOW + timedelta(days=1))
        assert second.period_start == get_edition(session, first_id).period_end
        assert [v.item.id for s in edition_stories(session, settings, second) for v in s.versions] == [later.id]
    with transaction(engine) as session, pytest.raises(InvalidInput, match="no news items published between"):
        create_edition(session, settings, until=NOW + timedelta(days=2))


def test_bad_periods_and_languages_are_refused(engine: Engine, settings: Settings) -> None:
    with transaction(engine) as session:
        sample_news(session)
    with transaction(engine) as session, pytest.raises(InvalidInput, match="the period is empty"):
        create_edition(session, settings, since=NOW, until=NOW - timedelta(days=1))
    with transaction(engine) as session, pytest.raises(InvalidInput, match="'de': not one of the configured"):
        create_edition(session, settings, since=NOW - timedelta(days=10), until=NOW, subjects={"de": "Hallo"})


def test_move_exclude_and_include(any_engine: Engine, any_settings: Settings) -> None:
    settings = any_settings
    with transaction(any_engine) as session:
        items = sample_news(session)
        edition_id = create_edition(session, settings, since=NOW - timedelta(days=10), until=NOW).id
        ids = {name: item.id for name, item in items.items()}
        extra = add_news(session, title="Hors période", language="es", published_at=NOW - timedelta(days=60)).id
    with transaction(any_engine) as session:
        # Moving any version moves the whole story.
        move_item(session, edition_id, ids["youth-en"], 1, settings=settings)
        exclude_item(session, edition_id, ids["youth-es"], settings=settings)
        include_item(session, edition_id, extra, settings=settings)
    assert story_titles(any_engine, settings, edition_id) == [
        [
            "fr:Les jeunes et la prévention",
            "en:Young people and prevention",
            "es:Los jóvenes y la prevención (excluded)",
        ],
        ["en:Online fraud against older people"],
        ["fr:Sécurité dans les quartiers"],
        ["es:Hors période"],
    ]
    with transaction(any_engine) as session:
        include_item(session, edition_id, ids["youth-es"], settings=settings)
        move_item(session, edition_id, extra, 2, settings=settings)
    titles = story_titles(any_engine, settings, edition_id)
    assert titles[0][2] == "es:Los jóvenes y la prevención" and titles[1] == ["es:Hors période"]


def test_item_changes_refused_with_a_clear_reason(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    with transaction(engine) as session:
        any_item = edition_stories(session, settings, get_edition(session, edition_id))[0].versions[0].item.id
    cases = [
        (lambda s: move_item(s, edition_id, any_item, 9), InvalidInput, "position 9 is out of range"),
        (lambda s: move_item(s, edition_id, 99999, 1), NotFound, "news item 99999 is not in edition"),
        (lambda s: include_item(s, edition_id, any_item), Conflict, "already in edition"),
        (lambda s: include_item(s, edition_id, 99999), NotFound, "no news item with id 99999"),
        (lambda s: move_item(s, 424242, any_item, 1), NotFound, "no edition 424242"),
    ]
    for action, error, message in cases:
        with transaction(engine) as session, pytest.raises(error, match=message):
            action(session)
    with transaction(engine) as session:
        exclude_item(session, edition_id, any_item)
    with transaction(engine) as session, pytest.raises(Conflict, match="already excluded"):
        exclude_item(session, edition_id, any_item)
    with transaction(engine) as session:
        get_edition(session, edition_id).status = EditionStatus.SENT
    with transaction(engine) as session, pytest.raises(Conflict, match="is sent: its items can no longer change"):
        include_item(session, edition_id, any_item)


def test_items_of_an_active_edition_are_not_taken_again(engine: Engine, settings: Settings) -> None:
    first_id = make_edition(engine, settings)
    with transaction(engine) as session:
        taken = edition_stories(session, settings, get_edition(session, first_id))[0].versions[0].item.id
        with pytest.raises(InvalidInput, match="no news items"):
            create_edition(session, settings, since=NOW - timedelta(days=10), until=NOW)
    with transaction(engine) as session:
        get_edition(session, first_id).status = EditionStatus.CANCELLED
    with transaction(engine) as session:
        again = create_edition(session, settings, since=NOW - timedelta(days=10), until=NOW)
        assert taken in [v.item.id for s in edition_stories(session, settings, again) for v in s.versions]


def test_story_edits_are_logged_with_who_made_them(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    with transaction(engine) as session:
        stories = edition_stories(session, settings, get_edition(session, edition_id))
        first, last = stories[0].versions[0].item.id, stories[-1].versions[0].item.id
    with transaction(engine) as session:
        move_item(session, edition_id, last, 1, settings=settings, actor="marie")
        exclude_item(session, edition_id, first, settings=settings, actor="paul")
        include_item(session, edition_id, first, settings=settings, actor="ana")
    with transaction(engine) as session:
        edits = [(row.actor, row.reason) for row in story_edits(session, edition_id)]
        status = get_edition(session, edition_id).status.value
        rows = story_edits(session, edition_id)
    assert edits == [
        ("marie", f"story edit: moved the story of news item {last} to position 1"),
        ("paul", f"story edit: excluded news item {first}"),
        ("ana", f"story edit: included news item {first} again"),
    ]
    # The edition's status is unchanged by an edit: the log row keeps it.
    assert {(row.from_status, row.to_status) for row in rows} == {(status, status)}
    # An edit by nobody is refused, so the log never has a blank author.
    with transaction(engine) as session, pytest.raises(InvalidInput, match="say who is editing"):
        exclude_item(session, edition_id, first, settings=settings, actor=" ")
