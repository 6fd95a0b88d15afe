"""The scheduler's jobs with short intervals: periodic drafts, scheduled sends, runs missed during downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine, func, select, text

from bulletin.app import workflow
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.models import Delivery, Edition, EditionStatus, utcnow
from bulletin.runners.scheduler import JOBS_TABLE, PERIODIC_JOB, BulletinScheduler, tick

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
    # Each copy is marked as a test in the language of the variant it carries.
    assert [s.split("]")[0] for s in subjects] == ["[Essai fr|youth", "[Test en|"]
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


def _stored_periodic_job(engine: Engine, settings: Settings, **changes: Any) -> Job:
    """Change the periodic job kept in the job store as a stopped install would have left it; return it.

    The job store is used directly (no scheduler runs), so nothing can run or move the job meanwhile.
    """
    store = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)
    store.start(BackgroundScheduler(timezone=ZoneInfo(settings.schedule.timezone)), "default")
    try:
        job = store.lookup_job(PERIODIC_JOB)
        assert job is not None
        if changes:
            state = job.__getstate__()
            state.update(changes)
            job.__setstate__(state)
            store.update_job(job)
        return job
    finally:
        store.shutdown()


def _downtime(tmp_path: Path, smtp_server: RecordingSMTPServer) -> tuple[Settings, Engine, IntervalTrigger]:
    """A database whose periodic job was due while no scheduler ran (its next run time is in the past)."""
    folder = _news_folder(tmp_path)
    settings = make_settings(tmp_path, smtp_server, ingest={"folders": [str(folder)]})
    engine = migrated_engine(settings)
    # Every ten minutes from an hour ahead: nothing comes due by itself during the test.
    trigger = IntervalTrigger(minutes=10, start_date=utcnow() + timedelta(hours=1))
    first = BulletinScheduler(engine, settings, tick_seconds=60, periodic_trigger=trigger)
    first.start()
    first.stop(wait=True)
    assert first.periodic_runs == 0
    return settings, engine, trigger


def test_a_periodic_run_missed_while_no_scheduler_ran_happens_once_at_restart(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings, engine, trigger = _downtime(tmp_path, smtp_server)
    # The scheduler was down while three runs came due (20.5, 10.5 and 0.5 minutes ago).
    missed = datetime.now(ZoneInfo(settings.schedule.timezone)) - timedelta(minutes=20, seconds=30)
    _stored_periodic_job(engine, settings, next_run_time=missed)

    second = BulletinScheduler(engine, settings, tick_seconds=60, periodic_trigger=trigger)
    second.start()
    try:
        wait_until(lambda: second.periodic_runs >= 1)
    finally:
        second.stop(wait=True)
    # Coalesced into one run; the next one is ten minutes after the last missed one, so nothing else catches up.
    assert second.periodic_runs == 1
    assert len(_editions(engine)) == 1
    next_run = _stored_periodic_job(engine, settings).next_run_time
    assert next_run is not None and next_run > datetime.now(UTC) + timedelta(minutes=9)


def test_a_job_store_written_with_the_old_module_path_still_runs_its_periodic_job(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings, engine, trigger = _downtime(tmp_path, smtp_server)
    # Installs from before the folder move stored the job under bulletin.scheduling.
    missed = datetime.now(ZoneInfo(settings.schedule.timezone)) - timedelta(seconds=30)
    _stored_periodic_job(engine, settings, func="bulletin.scheduling:run_periodic_job", next_run_time=missed)
    with reading(engine) as session:
        state = session.execute(text(f"SELECT job_state FROM {JOBS_TABLE} WHERE id = :id"), {"id": PERIODIC_JOB})
        assert b"bulletin.scheduling:run_periodic_job" in state.scalar_one()

    upgraded = BulletinScheduler(engine, settings, tick_seconds=60, periodic_trigger=trigger)
    upgraded.start()
    try:
        wait_until(lambda: upgraded.periodic_runs >= 1)
    finally:
        upgraded.stop(wait=True)
    assert upgraded.periodic_runs == 1
    (edition,) = _editions(engine)
    assert edition.created_by == "scheduler"
    assert _stored_periodic_job(engine, settings).func_ref == "bulletin.scheduling:run_periodic_job"


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
    # The reviewers have no language of their own: the notice is in the default language (French here).
    assert notice["Subject"] == f"[Bulletin] L’édition {edition_id} doit être approuvée à nouveau"
    body = notice.get_content()
    assert f"L’édition {edition_id} est revenue en relecture" in body
    assert "subscribers now need new variant(s) es|drugs" in body
    assert f"bulletin edition approve {edition_id} --by NAME" in body
    # The next tick has nothing more to say.
    assert tick(engine, settings, worker="test").voided == []
    assert len(smtp_server.messages) == 1
