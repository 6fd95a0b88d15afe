"""The scheduler's jobs with short intervals: periodic drafts, scheduled sends, runs missed during downtime."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select

from bulletin.app import workflow
from bulletin.db import transaction
from bulletin.models import Delivery, Edition, EditionStatus, utcnow
from bulletin.runners.scheduler import BulletinScheduler, tick

from .factories import add_subscriber, migrated_engine, wait_until
from .smtp_server import RecordingSMTPServer
from .workflow_fixtures import history, make_settings, schedule_approved, seed


def _news_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "incoming"
    folder.mkdir()
    recent = (utcnow() - timedelta(days=1)).strftime("%Y-%m-%d")
    (folder / "youth.md").write_text(
        f"---\ntitle: Summer jobs for teenagers\ndate: {recent}\nlang: en\ntopics: [youth]\n---\n\n"
        "Forty employers offered a first job to young people from three neighbourhoods.\n",
        encoding="utf-8",
    )
    (folder / "jeunes.md").write_text(
        f"---\ntitle: Des emplois d'été pour les adolescents\ndate: {recent}\nlang: fr\ntopics: [youth]\n---\n\n"
        "Quarante employeurs ont offert un premier emploi à des jeunes de trois quartiers.\n",
        encoding="utf-8",
    )
    return folder


def _editions(engine: object) -> list[Edition]:
    with transaction(engine) as session:  # type: ignore[arg-type]
        return list(session.scalars(select(Edition).order_by(Edition.id)))


def test_the_periodic_job_ingests_drafts_the_edition_and_sends_it_to_the_reviewers(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    folder = _news_folder(tmp_path)
    settings = make_settings(
        tmp_path,
        smtp_server,
        ingest={"folders": [str(folder)]},
        workflow={"reviewers": ["desk@example.org"]},
    )
    engine = migrated_engine(settings)
    with transaction(engine) as session:
        add_subscriber(session, "john@example.org", "en")
        add_subscriber(session, "marie@example.org", "fr", "youth")
    service = BulletinScheduler(engine, settings, tick_seconds=60, periodic_trigger=IntervalTrigger(seconds=0.5))
    service.start()
    try:
        wait_until(lambda: len(smtp_server.messages) >= 2)
        # Later runs find nothing new to put in an edition and draft nothing.
        wait_until(lambda: service.periodic_runs >= 3)
    finally:
        service.stop(wait=True)
    (edition,) = _editions(engine)
    assert edition.created_by == "scheduler"
    assert edition.status is EditionStatus.REVIEW
    assert history(engine, edition.id) == [("draft", "review", "scheduler")]
    subjects = sorted(str(m.parse()["Subject"]) for m in smtp_server.messages)
    assert [s.split("]")[0] for s in subjects] == ["[Test en|", "[Test fr|youth"]
    assert {r for m in smtp_server.messages for r in m.recipients} == {"desk@example.org"}


def test_a_scheduled_edition_goes_out_once_however_many_ticks_run(
    database_url: str, tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = make_settings(tmp_path, smtp_server, database_url=database_url)
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    schedule_approved(engine, settings, edition_id, utcnow() + timedelta(seconds=1))
    service = BulletinScheduler(engine, settings, tick_seconds=0.2)
    service.start()
    try:
        wait_until(lambda: workflow.S.SENT in {e.status for e in _editions(engine)})
        ticks = service.ticks
        wait_until(lambda: service.ticks >= ticks + 3)
    finally:
        service.stop(wait=True)
    assert len(smtp_server.messages) == 5
    assert sorted(smtp_server.recipients()) == sorted(set(smtp_server.recipients()))
    with transaction(engine) as session:
        assert session.scalar(select(func.count(Delivery.id))) == 5
    assert history(engine, edition_id)[-2:] == [("scheduled", "sending", "scheduler"), ("sending", "sent", "scheduler")]


def test_a_periodic_run_missed_while_no_scheduler_ran_happens_once_at_restart(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    folder = _news_folder(tmp_path)
    settings = make_settings(tmp_path, smtp_server, ingest={"folders": [str(folder)]})
    engine = migrated_engine(settings)
    start = utcnow() + timedelta(seconds=1)
    # Three runs due while the scheduler is down, none after: coalescing makes them one.
    trigger = IntervalTrigger(seconds=0.5, start_date=start, end_date=start + timedelta(seconds=1))
    first = BulletinScheduler(engine, settings, tick_seconds=60, periodic_trigger=trigger)
    first.start()
    first.stop(wait=True)
    assert first.periodic_runs == 0
    time.sleep(max((start + timedelta(seconds=1.5) - utcnow()).total_seconds(), 0))

    second = BulletinScheduler(engine, settings, tick_seconds=60, periodic_trigger=trigger)
    second.start()
    try:
        wait_until(lambda: second.periodic_runs >= 1)
        time.sleep(1.0)
    finally:
        second.stop(wait=True)
    assert second.periodic_runs == 1
    assert len(_editions(engine)) == 1


def test_reviewers_hear_when_a_scheduled_edition_loses_its_approval(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = make_settings(tmp_path, smtp_server, workflow={"reviewers": ["desk@example.org"]})
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    schedule_approved(engine, settings, edition_id, utcnow() + timedelta(hours=2))
    with transaction(engine) as session:
        # A new subscriber needs a variant nobody approved.
        add_subscriber(session, "rosa@example.org", "es", "drugs")
    report = tick(engine, settings, worker="test")
    assert report.voided == [edition_id]
    (notice,) = [m.parse() for m in smtp_server.wait_for(1)]
    assert notice["To"] == "desk@example.org"
    assert notice["Subject"] == f"[Bulletin] Edition {edition_id} needs approval again"
    body = notice.get_content()
    assert "subscribers now need new variant(s) es|drugs" in body
    assert f"bulletin edition approve {edition_id} --by NAME" in body
    # The next tick has nothing more to say.
    assert tick(engine, settings, worker="test").voided == []
    assert len(smtp_server.messages) == 1
