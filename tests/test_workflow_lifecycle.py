"""The edition lifecycle: every move logged, illegal ones refused, approval locked to the content."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, make_url, select

from bulletin.app import editions, workflow
from bulletin.compose.approval import (
    approval_problems,
    approve,
    check_approval,
    refresh_approval,
    schedule,
    start_sending,
)
from bulletin.compose.render import RenderedVariant, render_edition, render_variants, shipped_templates_dir
from bulletin.compose.variants import plan_variants, stored_variants, variant_key
from bulletin.config import Settings
from bulletin.db import transaction
from bulletin.errors import Conflict, InvalidInput
from bulletin.models import Approval, Delivery, EditionStatus, NewsItem, Subscriber, SubscriberStatus, utcnow
from bulletin.mta.review import send_review
from bulletin.mta.sender import freeze_recipients, run_send, send_edition
from bulletin.news.ingest import ingest_sources
from bulletin.runners.scheduler import tick

from .factories import RenderWatch, add_subscriber, migrated_engine
from .smtp_server import RecordingSMTPServer
from .workflow_fixtures import PERIOD_END, PERIOD_START, add_news, history, make_settings, seed

S = EditionStatus


@pytest.fixture
def world(tmp_path: Path, smtp_server: RecordingSMTPServer) -> tuple[Settings, Engine, dict[str, int]]:
    settings = make_settings(tmp_path, smtp_server)
    engine = migrated_engine(settings)
    return settings, engine, seed(engine, settings)


def _status(engine: Engine, edition_id: int) -> EditionStatus:
    with transaction(engine) as session:
        return workflow.get_edition(session, edition_id).status


def _approve(engine: Engine, settings: Settings, edition_id: int, approver: str = "ana") -> Approval:
    with transaction(engine) as session:
        if workflow.get_edition(session, edition_id).status is S.DRAFT:
            workflow.submit(session, edition_id, "marie")
    return approve(engine, settings, edition_id, approver)


def _deliveries(engine: Engine, edition_id: int) -> int:
    with transaction(engine) as session:
        return int(session.scalar(select(func.count(Delivery.id)).where(Delivery.edition_id == edition_id)) or 0)


def test_an_edition_goes_from_draft_to_sent_through_approval_and_every_move_is_logged(
    database_url: str, tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = make_settings(tmp_path, smtp_server, database_url=database_url)
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    _approve(engine, settings, edition_id)
    send_at = utcnow() + timedelta(hours=1)
    with transaction(engine) as session:
        schedule(session, settings, edition_id, send_at, "ana")

    # Before the send time nothing happens; after it, one tick sends the edition, later ticks do nothing.
    assert tick(engine, settings, worker="test").started == []
    assert smtp_server.messages == []
    report = tick(engine, settings, worker="test", now=send_at + timedelta(seconds=1))
    assert report.sent == [edition_id]
    tick(engine, settings, worker="test", now=send_at + timedelta(minutes=5))

    assert sorted(smtp_server.recipients()) == sorted(
        ["ana@example.org", "marie@example.org", "paul@example.org", "john@example.org", "lee@example.org"]
    )
    assert history(engine, edition_id) == [
        ("draft", "review", "marie"),
        ("review", "approved", "ana"),
        ("approved", "scheduled", "ana"),
        ("scheduled", "sending", "scheduler"),
        ("sending", "sent", "scheduler"),
    ]
    with transaction(engine) as session:
        sent = workflow.get_edition(session, edition_id)
        assert sent.sent_at is not None and sent.send_started_at is not None
    engine.dispose()


def test_approval_is_refused_before_review_and_needs_distinct_approvers(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = make_settings(tmp_path, smtp_server, workflow={"approvals_required": 2})
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    with pytest.raises(Conflict, match="submit it for review first"):
        approve(engine, settings, edition_id, "ana")
    with transaction(engine) as session:
        workflow.submit(session, edition_id, "marie")
    approve(engine, settings, edition_id, "ana")
    assert _status(engine, edition_id) is S.REVIEW
    with pytest.raises(Conflict, match="ANA has already approved"):
        approve(engine, settings, edition_id, "ANA")
    with transaction(engine) as session, pytest.raises(Conflict, match="1 of the 2 approvals"):
        check_approval(session, settings, workflow.get_edition(session, edition_id))
    approve(engine, settings, edition_id, "ben")
    assert _status(engine, edition_id) is S.APPROVED
    with transaction(engine) as session:
        approvals = workflow.valid_approvals(session, edition_id)
        stored = stored_variants(session, workflow.get_edition(session, edition_id))
    assert [a.approver for a in approvals] == ["ana", "ben"]
    # Each approval names every variant with the hash of its stored rendering.
    expected = {variant_key(lang, interests): row.content_hash for (lang, interests), row in stored.items()}
    assert approvals[0].variant_hashes == expected == approvals[1].variant_hashes
    assert set(expected) == {"fr|", "fr|youth", "en|", "en|cities,youth", "es|"}


def test_approval_is_refused_while_a_variant_breaks_the_checks(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = make_settings(tmp_path, smtp_server, compose={"max_html_bytes": 2000})
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    with transaction(engine) as session:
        workflow.submit(session, edition_id, "marie")
    with pytest.raises(Conflict, match=r"cannot be approved: fr\|"):
        approve(engine, settings, edition_id, "ana")
    assert _status(engine, edition_id) is S.REVIEW
    with transaction(engine) as session:
        assert workflow.approvals_of(session, edition_id) == []


@pytest.mark.parametrize(
    ("start", "action", "message"),
    [
        ("draft", "schedule", "edition {id} is draft: it cannot be scheduled (submit it for review first"),
        ("review", "schedule", "edition {id} is review: it cannot be scheduled (it needs approval first"),
        ("review", "start", "edition {id} is review: it cannot start sending (it needs approval first"),
        ("review", "submit", "edition {id} is review: it cannot go to review"),
        ("approved", "pause", "edition {id} is approved: it cannot be paused (only a scheduled or sending"),
        ("approved", "resume", "edition {id} is approved: only a paused edition can be resumed"),
        ("approved", "approve", "edition {id} is already approved"),
        ("cancelled", "submit", "edition {id} is cancelled: it cannot go to review (it was cancelled)"),
        ("cancelled", "cancel", "edition {id} is cancelled: it cannot be cancelled (it was cancelled)"),
        ("sent", "cancel", "edition {id} is sent: it cannot be cancelled (it has been sent)"),
        ("sent", "pause", "edition {id} is sent: it cannot be paused (it has been sent)"),
    ],
)
def test_illegal_moves_are_refused_and_change_nothing(
    world: tuple[Settings, Engine, dict[str, int]], start: str, action: str, message: str
) -> None:
    settings, engine, ids = world
    edition_id = ids["edition"]
    if start in ("review", "approved", "sent"):
        with transaction(engine) as session:
            workflow.submit(session, edition_id, "marie")
    if start in ("approved", "sent"):
        _approve(engine, settings, edition_id)
    if start == "sent":
        outcome = send_edition(engine, settings, edition_id, actor="test", worker="test")
        assert outcome.status is S.SENT
    if start == "cancelled":
        with transaction(engine) as session:
            workflow.cancel(session, edition_id, "marie")
    before = history(engine, edition_id)
    actions = {
        "schedule": lambda s: schedule(s, settings, edition_id, utcnow() + timedelta(days=1), "x"),
        "start": lambda s: start_sending(s, settings, edition_id, "x"),
        "submit": lambda s: workflow.submit(s, edition_id, "x"),
        "pause": lambda s: workflow.pause(s, edition_id, "x"),
        "resume": lambda s: workflow.resume(s, edition_id, "x"),
        "approve": lambda s: approve(engine, settings, edition_id, "zoe"),
        "cancel": lambda s: workflow.cancel(s, edition_id, "x"),
    }
    with pytest.raises(Conflict) as refused, transaction(engine) as session:
        actions[action](session)
    assert str(refused.value).startswith(message.format(id=edition_id))
    assert "\n" not in str(refused.value)
    # A domain refusal names no command or option: each edge words its next step (refused.value.hint).
    assert "bulletin " not in str(refused.value) and "--" not in str(refused.value)
    assert history(engine, edition_id) == before


def _ingested_world(tmp_path: Path, settings: Settings, engine: Engine) -> tuple[int, Path]:
    folder = tmp_path / "news"
    folder.mkdir()
    page = folder / "safety.md"
    page.write_text(
        "---\ntitle: Safer streets for everyone\ndate: 2026-11-15\nlang: en\ntopics: [cities]\n---\n\n"
        "The city opened three new community centres.\n",
        encoding="utf-8",
    )
    report = ingest_sources(engine, settings, [str(folder)])
    assert report.added == 1
    with transaction(engine) as session:
        add_subscriber(session, "john@example.org", "en")
        add_subscriber(session, "marie@example.org", "fr")
        edition = editions.create_edition(session, settings, since=PERIOD_START, until=PERIOD_END, actor="test")
        return edition.id, page


def test_a_news_item_changed_by_reingest_voids_the_approval(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    settings = make_settings(tmp_path, smtp_server)
    engine = migrated_engine(settings)
    edition_id, page = _ingested_world(tmp_path, settings, engine)
    _approve(engine, settings, edition_id)
    # Ingesting the same file again changes nothing, so the approval holds.
    ingest_sources(engine, settings, [str(page)])
    with transaction(engine) as session:
        assert refresh_approval(session, settings, workflow.get_edition(session, edition_id), full=False) == []
    page.write_text(page.read_text(encoding="utf-8").replace("three", "four"), encoding="utf-8")
    assert ingest_sources(engine, settings, [str(page)]).updated == 1

    # The quick check of the scheduler's tick notices the re-ingested item without being told.
    report = tick(engine, settings, worker="test")
    assert report.voided == [edition_id]
    assert _status(engine, edition_id) is S.REVIEW
    with transaction(engine) as session:
        (approval,) = workflow.approvals_of(session, edition_id)
    assert approval.voided_at is not None
    assert "re-ingested" in (approval.void_reason or "")
    assert history(engine, edition_id)[-1] == ("approved", "review", "scheduler")


VOID_REASONS = {
    "move": "the content of en|, es|, fr| changed since approval",
    "exclude": "the content of es|, fr| changed since approval",
    "include": "the content of en|, en|cities,youth, es|, fr| and 1 more changed since approval",
    "template": "the templates or rendering settings changed",
    "config": "the templates or rendering settings changed",
    "new-variant": "subscribers now need new variant(s) es|drugs",
    "rerender": "the stored rendering of en|, en|cities,youth, es|, fr| and 1 more is not the approved one",
    "variant-dropped": "the approved rendering of en|cities,youth is no longer stored",
}
VOIDING_CHANGES = list(VOID_REASONS)


@pytest.mark.parametrize("change", VOIDING_CHANGES)
def test_a_change_that_alters_a_variant_voids_the_approval_and_no_send_starts(
    world: tuple[Settings, Engine, dict[str, int]],
    tmp_path: Path,
    smtp_server: RecordingSMTPServer,
    change: str,
) -> None:
    settings, engine, ids = world
    edition_id = ids["edition"]
    _approve(engine, settings, edition_id)
    with transaction(engine) as session:
        schedule(session, settings, edition_id, utcnow() + timedelta(minutes=5), "ana")

    used = settings
    with transaction(engine) as session:
        if change == "move":
            editions.move_item(session, edition_id, ids["cyber-en"], 3, settings=settings)
        elif change == "exclude":
            editions.exclude_item(session, edition_id, ids["cities-fr"], settings=settings)
        elif change == "include":
            late = add_news(session, "A late story", "fr", "youth", days=1)
            editions.include_item(session, edition_id, late, settings=settings)
        elif change == "new-variant":
            add_subscriber(session, "rosa@example.org", "es", "drugs")
        elif change == "variant-dropped":
            # A re-render while Lee was away dropped Lee's approved variant; Lee is back.
            lee = session.get(Subscriber, ids["lee@example.org"])
            assert lee is not None
            lee.status = SubscriberStatus.UNSUBSCRIBED
            session.flush()
            render_edition(session, settings, workflow.get_edition(session, edition_id))
            lee.status = SubscriberStatus.ACTIVE
        elif change == "rerender":
            # Someone re-renders and stores the variants after a config change (edition render).
            other = make_settings(tmp_path, smtp_server, organisation={"name": "Another Centre"})
            render_edition(session, other, workflow.get_edition(session, edition_id))
    if change == "template":
        templates = tmp_path / "templates"
        shutil.copytree(shipped_templates_dir(), templates)
        text_template = templates / "email" / "bulletin.txt.j2"
        text_template.write_text(text_template.read_text(encoding="utf-8") + "\nPrinted on recycled electrons.\n")
        used = make_settings(tmp_path, smtp_server, compose={"templates_dir": str(templates)})
    elif change == "config":
        used = make_settings(tmp_path, smtp_server, organisation={"name": "Centre renamed"})

    outcome = send_edition(engine, used, edition_id, actor="scheduler", worker="test")
    assert not outcome.started
    assert outcome.refused and outcome.refused.startswith("approval void: ")
    assert VOID_REASONS[change] in outcome.refused
    assert _status(engine, edition_id) is S.REVIEW
    assert _deliveries(engine, edition_id) == 0
    assert smtp_server.messages == []
    with transaction(engine) as session:
        assert workflow.valid_approvals(session, edition_id) == []
        with pytest.raises(Conflict, match="cannot start sending"):
            start_sending(session, used, edition_id, "x")
    assert history(engine, edition_id)[-1][:2] == ("scheduled", "review")

    # Approved again, it goes out with the new content.
    approve(engine, used, edition_id, "ben")
    assert send_edition(engine, used, edition_id, actor="test", worker="test").status is S.SENT


def test_changes_that_leave_every_variant_alone_keep_the_approval(
    world: tuple[Settings, Engine, dict[str, int]], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine, ids = world
    edition_id = ids["edition"]
    _approve(engine, settings, edition_id)
    with transaction(engine) as session:
        # A new subscriber of an existing variant, and a news item outside the edition.
        add_subscriber(session, "zoe@example.org", "fr", "")
        add_news(session, "Next month's story", "fr", "youth", days=-5)
    with transaction(engine) as session:
        assert approval_problems(session, settings, workflow.get_edition(session, edition_id)) == []
    outcome = send_edition(engine, settings, edition_id, actor="test", worker="test")
    assert outcome.status is S.SENT
    assert "zoe@example.org" in smtp_server.recipients()


def test_a_variant_with_no_items_is_approved_but_an_edition_with_none_is_not(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = make_settings(tmp_path, smtp_server)
    engine = migrated_engine(settings)
    with transaction(engine) as session:
        add_subscriber(session, "ana@example.org", "es", "drugs")
        item = add_news(session, "Seguridad en los barrios", "es", "cities")
        edition = editions.create_edition(session, settings, since=PERIOD_START, until=PERIOD_END)
        workflow.submit(session, edition.id, "marie")
        edition_id = edition.id
    with pytest.raises(Conflict, match="has no news items"):
        approve(engine, settings, edition_id, "ana")
    with transaction(engine) as session:
        assert session.get(NewsItem, item) is not None


def test_pause_holds_a_scheduled_edition_and_resume_lets_it_go(
    world: tuple[Settings, Engine, dict[str, int]], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine, ids = world
    edition_id = ids["edition"]
    _approve(engine, settings, edition_id)
    send_at = utcnow() + timedelta(minutes=10)
    with transaction(engine) as session:
        schedule(session, settings, edition_id, send_at, "ana")
        workflow.pause(session, edition_id, "marie", "typo in a subject")
    late = send_at + timedelta(minutes=1)
    assert tick(engine, settings, worker="test", now=late).started == []
    assert smtp_server.messages == []
    with transaction(engine) as session:
        assert workflow.resume(session, edition_id, "marie").status is S.SCHEDULED
    assert tick(engine, settings, worker="test", now=late).sent == [edition_id]
    assert len(smtp_server.messages) == 5


def test_pause_stops_a_send_between_batches_and_resume_continues_it(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = make_settings(tmp_path, smtp_server, delivery={"batch_size": 2})
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    _approve(engine, settings, edition_id)

    with transaction(engine) as session:
        edition = start_sending(session, settings, edition_id, "ana")
        freeze_recipients(session, settings, edition)
        workflow.pause(session, edition_id, "marie")
    report = run_send(engine, settings, edition_id, worker="test")
    assert report.halted and report.sent == 0
    with transaction(engine) as session:
        assert workflow.is_halted(session, edition_id)
        assert workflow.resume(session, edition_id, "marie").status is S.SENDING
    tick(engine, settings, worker="test")
    assert _status(engine, edition_id) is S.SENT
    assert len(smtp_server.messages) == 5
    assert [row[:2] for row in history(engine, edition_id)][-3:] == [
        ("sending", "paused"),
        ("paused", "sending"),
        ("sending", "sent"),
    ]


def test_a_cancelled_edition_is_never_sent(
    world: tuple[Settings, Engine, dict[str, int]], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine, ids = world
    edition_id = ids["edition"]
    _approve(engine, settings, edition_id)
    send_at = utcnow() + timedelta(minutes=1)
    with transaction(engine) as session:
        schedule(session, settings, edition_id, send_at, "ana")
        workflow.cancel(session, edition_id, "marie", "replaced")
    assert tick(engine, settings, worker="test", now=send_at + timedelta(hours=1)).started == []
    assert smtp_server.messages == []
    assert history(engine, edition_id)[-1] == ("scheduled", "cancelled", "marie")


def _second_sunday_of_march(year: int) -> datetime:
    day = datetime(year, 3, 8)
    return day + timedelta(days=(6 - day.weekday()) % 7)


def test_send_times_are_read_in_the_configured_time_zone(world: tuple[Settings, Engine, dict[str, int]]) -> None:
    settings, engine, ids = world
    year = utcnow().year + 1
    assert workflow.parse_send_time(f"{year}-12-01 09:00", "America/Toronto") == datetime(
        year, 12, 1, 14, 0, tzinfo=UTC
    )
    assert workflow.parse_send_time(f"{year}-07-01 09:00", "America/Toronto") == datetime(year, 7, 1, 13, 0, tzinfo=UTC)
    assert workflow.parse_send_time(f"{year}-12-01T09:00+01:00", "America/Toronto") == datetime(
        year, 12, 1, 8, 0, tzinfo=UTC
    )
    gap = _second_sunday_of_march(year).strftime("%Y-%m-%d") + " 02:30"
    with pytest.raises(InvalidInput, match="does not exist in America/Toronto"):
        workflow.parse_send_time(gap, "America/Toronto")
    with pytest.raises(InvalidInput, match="expected a date and time"):
        workflow.parse_send_time("next tuesday", "America/Toronto")
    _approve(engine, settings, ids["edition"])
    with transaction(engine) as session, pytest.raises(InvalidInput, match="is in the past"):
        schedule(session, settings, ids["edition"], "2020-01-01 09:00", "ana")


def test_the_tick_notices_an_edited_scheduled_edition_before_its_send_time(
    world: tuple[Settings, Engine, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine, ids = world
    renders: list[int] = []
    real_render = render_variants

    def counting_render(*args: Any, **kwargs: Any) -> list[RenderedVariant]:
        renders.append(1)
        return real_render(*args, **kwargs)

    monkeypatch.setattr("bulletin.compose.approval.render_variants", counting_render)
    edition_id = ids["edition"]
    _approve(engine, settings, edition_id)
    with transaction(engine) as session:
        schedule(session, settings, edition_id, utcnow() + timedelta(days=1), "ana")
    checked: dict[int, datetime] = {}
    renders.clear()
    assert tick(engine, settings, worker="test", checked=checked).voided == []
    assert edition_id in checked and len(renders) == 1
    # Nothing changed: the next tick does not render again, and keeps the approval.
    assert tick(engine, settings, worker="test", checked=checked).voided == []
    assert len(renders) == 1
    with transaction(engine) as session:
        editions.exclude_item(session, edition_id, ids["youth-es"], settings=settings)
    report = tick(engine, settings, worker="test", checked=checked)
    assert report.voided == [edition_id]
    assert _status(engine, edition_id) is S.REVIEW
    with transaction(engine) as session:
        (approval,) = workflow.approvals_of(session, edition_id)
    assert approval.void_reason == "the content of es| changed since approval"


def test_an_approved_edition_takes_one_more_approver_when_more_are_required(
    world: tuple[Settings, Engine, dict[str, int]], tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings, engine, ids = world
    edition_id = ids["edition"]
    _approve(engine, settings, edition_id, "ana")
    stricter = make_settings(tmp_path, smtp_server, workflow={"approvals_required": 2})
    with transaction(engine) as session, pytest.raises(Conflict, match="has 1 of the 2 approvals it needs"):
        start_sending(session, stricter, edition_id, "x")
    second = approve(engine, stricter, edition_id, "ben")
    with transaction(engine) as session:
        (first,) = [a for a in workflow.valid_approvals(session, edition_id) if a.approver == "ana"]
    assert second.variant_hashes == first.variant_hashes
    with pytest.raises(Conflict, match="already approved"):
        approve(engine, stricter, edition_id, "carla")
    assert send_edition(engine, stricter, edition_id, actor="test", worker="test").status is S.SENT


def test_an_approval_and_a_review_render_each_variant_once_and_never_inside_a_write(
    world: tuple[Settings, Engine, dict[str, int]], smtp_server: RecordingSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, engine, ids = world
    edition_id = ids["edition"]
    with transaction(engine) as session:
        planned = len(plan_variants(session, settings, workflow.get_edition(session, edition_id)))
    assert planned == 5
    watch = RenderWatch(monkeypatch, Path(make_url(settings.database_url).database or ""))
    # The review renders the draft once: the same rendering is stored, previewed and mailed.
    outcome = send_review(engine, settings, edition_id, ["desk@example.org"])
    assert outcome.messages == planned and (watch.renders, watch.inside_writes) == (planned, 0)
    assert _status(engine, edition_id) is S.REVIEW
    watch.renders = 0
    approve(engine, settings, edition_id, "ana")
    assert (watch.renders, watch.inside_writes) == (planned, 0)
    # Reviewing the approved edition sends its stored, approved rendering: nothing is rendered.
    watch.renders = 0
    send_review(engine, settings, edition_id, ["desk@example.org"])
    assert watch.renders == 0
