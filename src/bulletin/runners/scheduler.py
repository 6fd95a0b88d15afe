"""The scheduler: APScheduler triggers the periodic edition and the send tick; state stays in our tables.

Two jobs live in APScheduler's SQLAlchemy job store, in the same database as everything else:

- the periodic edition, on ``schedule.cron`` in ``schedule.timezone``: ingest the configured
  feeds and folders, draft the edition of the period and send it to the reviewers;
- the tick, every ``schedule.tick_seconds``: start or resume every edition whose scheduled
  time has passed, retry deferred deliveries that are due, and void approvals whose content changed.

The job store only remembers when each job runs next, so a scheduler restarted after downtime
runs a missed job once (coalescing, within ``schedule.misfire_grace_seconds``). Whether an
edition was sent is decided by the edition and delivery tables, never by the job store, so a
due edition goes out exactly once however often the tick runs.

Only one scheduler may run per database: it holds the ``scheduler`` row of the ``locks`` table
and renews its heartbeat; a second one is refused and told which process holds it. A lock whose
holder is not alive by the one rule of :mod:`bulletin.mta.locks` (heartbeat stopped, or its
process on this machine gone or its pid reused) is taken over.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from bulletin.app import editions, workflow
from bulletin.app.editions import get_edition
from bulletin.compose.approval import record_void
from bulletin.config import Settings
from bulletin.cron import CronError, crontab_trigger
from bulletin.db import reading, transaction
from bulletin.errors import BulletinError
from bulletin.i18n import format_local
from bulletin.models import Lock
from bulletin.mta import locks
from bulletin.mta.inbox import fetch_imap
from bulletin.mta.ledger import sending_editions
from bulletin.mta.locks import SCHEDULER_LOCK, LockHeld, describe_holder, holder_name
from bulletin.mta.notices import void_notice_message
from bulletin.mta.review import send_review
from bulletin.mta.sender import retry_due, send_edition
from bulletin.mta.smtp import send_one
from bulletin.news.ingest import ingest_sources

log = logging.getLogger(__name__)

__all__ = [
    "BulletinScheduler",
    "LockHeld",
    "TickReport",
    "acquire_lock",
    "current_holder",
    "describe_holder",
    "make_holder",
    "periodic_edition",
    "release_lock",
    "renew_lock",
    "running_scheduler",
    "tick",
]

LOCK_NAME = SCHEDULER_LOCK
JOBS_TABLE = "apscheduler_jobs"
PERIODIC_JOB = "bulletin-periodic-edition"
TICK_JOB = "bulletin-tick"
HEARTBEAT_JOB = "bulletin-heartbeat"
BOUNCE_FETCH_JOB = "bulletin-bounce-fetch"


# ---------------------------------------------------------------------------
# The one-scheduler-per-database lock (one rule for every lock: bulletin.mta.locks)

REFUSAL = "another scheduler is running on this database"


def make_holder() -> str:
    """An identity for this process: host, pid and a random tag (two schedulers in one process differ)."""
    return holder_name("scheduler", unique=True)


def acquire_lock(
    engine: Engine,
    holder: str,
    *,
    name: str = LOCK_NAME,
    stale_after: float = locks.STALE_AFTER,
    now: datetime | None = None,
) -> str | None:
    """Take the scheduler lock; return the previous holder if it was taken over, else None.

    Raises LockHeld naming the live holder when another process has it.
    """
    return locks.acquire(engine, name, holder, refusal=REFUSAL, stale_after=stale_after, now=now)


def renew_lock(engine: Engine, holder: str, *, name: str = LOCK_NAME, now: datetime | None = None) -> bool:
    """Refresh the heartbeat; False when the lock now belongs to someone else."""
    return locks.renew(engine, name, holder, now=now)


def release_lock(engine: Engine, holder: str, *, name: str = LOCK_NAME) -> None:
    """Give the lock up if this holder still has it."""
    locks.release(engine, name, holder)


def current_holder(engine: Engine, *, name: str = LOCK_NAME) -> Lock | None:
    return locks.current_holder(engine, name)


# ---------------------------------------------------------------------------
# The jobs (plain functions; the scheduler only decides when they run)


@dataclass
class TickReport:
    """What one tick did."""

    started: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    voided: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    retried: int = 0


def tick(
    engine: Engine,
    settings: Settings,
    *,
    worker: str,
    now: datetime | None = None,
    checked: dict[int, datetime] | None = None,
) -> TickReport:
    """Void changed approvals, send every due edition, retry due deferred deliveries.

    Approved editions are re-rendered and compared with their approval; with ``checked`` (edition
    id -> its ``updated_at`` when last compared) an edition nobody touched since gets the quick
    check only (config, stored hashes, new variants, re-ingested news).
    """
    report = TickReport()
    with reading(engine) as session:
        waiting = workflow.approved_waiting(session)
    for edition_id in waiting:
        try:
            with reading(engine) as session:
                touched = get_edition(session, edition_id).updated_at
            # Without a cache of its own, the edition's record of its last full check decides.
            full = None if checked is None else checked.get(edition_id) != touched
            # Rendered in a reading session; a void is committed in its own transaction.
            problems = record_void(engine, settings, edition_id, actor="scheduler", full=full)
        except BulletinError as exc:
            log.error("edition %s: could not check its approval: %s", edition_id, exc)
            continue
        if problems:
            report.voided.append(edition_id)
            notify_void(settings, edition_id, problems)
        elif checked is not None and full:
            checked[edition_id] = touched

    with reading(engine) as session:
        due = workflow.due_editions(session, now)
    for edition_id in due:
        try:
            outcome = send_edition(engine, settings, edition_id, actor="scheduler", worker=worker)
        except BulletinError as exc:
            report.refused[edition_id] = str(exc)
            log.warning("edition %s not sent: %s", edition_id, exc)
            continue
        if outcome.refused:
            report.refused[edition_id] = outcome.refused
            report.voided.append(edition_id)
            log.warning("edition %s not sent: %s", edition_id, outcome.refused)
            notify_void(settings, edition_id, [outcome.refused.removeprefix("approval void: ")])
            continue
        report.started.append(edition_id)
        if outcome.status is workflow.S.SENT:
            report.sent.append(edition_id)
        log.info("edition %s: %s", edition_id, outcome.status.value)

    report.retried = retry_due(engine, settings, worker=worker).attempted
    # Retries may have settled the last deliveries of an edition.
    for edition_id in sending_editions(engine):
        with transaction(engine) as session:
            if workflow.finish_sending(session, edition_id, "scheduler").status is workflow.S.SENT:
                report.sent.append(edition_id)
    return report


def notify_void(settings: Settings, edition_id: int, problems: list[str]) -> None:
    """Tell ``workflow.reviewers`` that an approved edition went back to review, and why.

    Nobody watches the scheduler: without this, a scheduled edition whose approval was voided
    would silently not go out. Reviewers are addresses without a language of their own, so the
    notice is in ``default_language``.
    """
    for address in settings.workflow.reviewers:
        message = void_notice_message(
            settings, to_email=address, edition_id=edition_id, problems=problems, language=settings.default_language
        )
        try:
            send_one(settings, message)
        except Exception as exc:
            # A notice that cannot go out is logged; the tick goes on.
            log.error("could not tell %s that edition %s needs approval again: %s", address, edition_id, exc)


def ingest_configured_sources(engine: Engine, settings: Settings) -> None:
    """Read ``ingest.feeds`` and ``ingest.folders``; a failing source is logged, not fatal."""
    sources = [*settings.ingest.feeds, *(str(settings.resolve_path(f)) for f in settings.ingest.folders)]
    if not sources:
        log.info("no feeds or folders configured: nothing to ingest")
        return
    report = ingest_sources(engine, settings, sources)
    for outcome in report.outcomes:
        if outcome.error:
            log.warning("could not ingest %s: %s", outcome.source, outcome.error)
    log.info(
        "ingested %d source(s): %d added, %d updated, %d unchanged, %d rejected",
        len(report.outcomes),
        report.added,
        report.updated,
        report.unchanged,
        report.rejected,
    )


def periodic_edition(engine: Engine, settings: Settings, *, actor: str = "scheduler") -> int | None:
    """Ingest, draft the edition of the period and send it to the reviewers; return its id."""
    ingest_configured_sources(engine, settings)
    try:
        with transaction(engine) as session:
            edition = editions.create_edition(session, settings, actor=actor)
            edition_id = edition.id
            item_count = len(edition.items)
    except BulletinError as exc:
        log.warning("no periodic edition drafted: %s", exc)
        return None
    log.info("drafted edition %s with %d news item(s)", edition_id, item_count)
    reviewers = settings.workflow.reviewers
    if reviewers:
        sent = send_review(engine, settings, edition_id, reviewers, actor=actor)
        log.info("edition %s sent to %d reviewer(s) (%d test message(s))", edition_id, len(reviewers), sent.messages)
    else:
        log.info("no workflow.reviewers configured: edition %s waits in draft", edition_id)
    return edition_id


# APScheduler stores a reference to the job function and its arguments; the engine and settings
# cannot be pickled into the job store, so jobs name the running scheduler by a key instead.
_RUNNING: dict[str, BulletinScheduler] = {}


def _context_key(settings: Settings) -> str:
    return hashlib.sha256(settings.database_url.encode("utf-8")).hexdigest()[:16]


def run_periodic_job(key: str) -> None:
    """Job entry point of the periodic edition."""
    scheduler = _RUNNING.get(key)
    if scheduler is not None:
        scheduler.periodic_runs += 1
        periodic_edition(scheduler.engine, scheduler.settings)


def run_tick_job(key: str) -> None:
    """Job entry point of the tick."""
    scheduler = _RUNNING.get(key)
    if scheduler is not None:
        report = tick(scheduler.engine, scheduler.settings, worker=scheduler.holder, checked=scheduler.checked)
        scheduler.ticks += 1
        if report.started or report.voided or report.retried:
            log.info(
                "tick: %d edition(s) sent or resumed, %d approval(s) voided, %d deferred delivery(ies) retried",
                len(report.started),
                len(report.voided),
                report.retried,
            )


def run_bounce_fetch_job(key: str) -> None:
    """Job entry point of the bounce mailbox fetch (when ``bounces.imap_host`` is set)."""
    scheduler = _RUNNING.get(key)
    if scheduler is not None:
        summary = fetch_imap(scheduler.engine, scheduler.settings)
        if summary.results:
            log.info("bounce mailbox: %s", summary.line())


def run_heartbeat_job(key: str) -> None:
    scheduler = _RUNNING.get(key)
    if scheduler is not None:
        scheduler.heartbeat()


# ---------------------------------------------------------------------------
# The scheduler itself


def periodic_trigger_for(settings: Settings) -> CronTrigger:
    """The cron trigger of ``schedule.cron`` in ``schedule.timezone``."""
    try:
        return crontab_trigger(settings.schedule.cron, ZoneInfo(settings.schedule.timezone))
    except CronError as exc:
        raise BulletinError(f"schedule.cron: {exc}") from None


class BulletinScheduler:
    """One APScheduler instance bound to one database, holding that database's scheduler lock.

    ``start()`` returns once the jobs are scheduled (the work happens in background threads);
    ``wait()`` blocks until ``stop()`` is called or the lock is lost.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        tick_seconds: float | None = None,
        heartbeat_seconds: float = 15.0,
        stale_after: float | None = None,
        periodic_trigger: BaseTrigger | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.holder = make_holder()
        self.key = _context_key(settings)
        self.tick_seconds = tick_seconds or float(settings.schedule.tick_seconds)
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_after = stale_after if stale_after is not None else max(4 * heartbeat_seconds, 30.0)
        self.periodic_trigger = periodic_trigger or periodic_trigger_for(settings)
        self.ticks = 0
        self.periodic_runs = 0
        # Approved editions already re-rendered and compared, by the updated_at they had then.
        self.checked: dict[int, datetime] = {}
        self.lock_lost = False
        self._stopped = threading.Event()
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """Take the lock and start the jobs; raise LockHeld if another scheduler runs."""
        previous = acquire_lock(self.engine, self.holder, stale_after=self.stale_after)
        if previous:
            log.warning(
                "took over the scheduler lock from %s (its process is gone or stopped renewing the lock)",
                describe_holder(previous),
            )
        _RUNNING[self.key] = self
        try:
            self._start_jobs()
        except BaseException:
            _RUNNING.pop(self.key, None)
            release_lock(self.engine, self.holder)
            raise
        log.info(
            "scheduler started (%s): periodic edition %s, next at %s; tick every %g s",
            describe_holder(self.holder),
            self.settings.schedule.cron,
            self.next_periodic_run(),
            self.tick_seconds,
        )

    def _start_jobs(self) -> None:
        grace = self.settings.schedule.misfire_grace_seconds
        scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=self.engine, tablename=JOBS_TABLE),
                "process": MemoryJobStore(),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone=ZoneInfo(self.settings.schedule.timezone),
        )
        scheduler.add_listener(self._on_job_error, EVENT_JOB_ERROR)
        self._scheduler = scheduler
        # Paused, so a missed periodic run kept in the job store is not lost by re-adding the job.
        scheduler.start(paused=True)
        existing = scheduler.get_job(PERIODIC_JOB, jobstore="default")
        if existing is None or repr(existing.trigger) != repr(self.periodic_trigger) or existing.args != (self.key,):
            scheduler.add_job(
                run_periodic_job,
                self.periodic_trigger,
                args=[self.key],
                id=PERIODIC_JOB,
                name="periodic edition",
                jobstore="default",
                replace_existing=True,
            )
        elif existing.next_run_time is not None:
            log.info("periodic edition due since %s will run now", existing.next_run_time)
        scheduler.add_job(
            run_tick_job,
            IntervalTrigger(seconds=self.tick_seconds),
            args=[self.key],
            id=TICK_JOB,
            name="send tick",
            jobstore="default",
            replace_existing=True,
            next_run_time=datetime.now(ZoneInfo(self.settings.schedule.timezone)),
        )
        if self.settings.bounces.imap_host:
            scheduler.add_job(
                run_bounce_fetch_job,
                IntervalTrigger(seconds=self.settings.bounces.poll_seconds),
                args=[self.key],
                id=BOUNCE_FETCH_JOB,
                name="bounce mailbox fetch",
                jobstore="process",
            )
        scheduler.add_job(
            run_heartbeat_job,
            IntervalTrigger(seconds=self.heartbeat_seconds),
            args=[self.key],
            id=HEARTBEAT_JOB,
            name="lock heartbeat",
            jobstore="process",
            misfire_grace_time=None,
        )
        scheduler.resume()

    def next_periodic_run(self) -> str:
        if self._scheduler is None:
            return "-"
        job = self._scheduler.get_job(PERIODIC_JOB)
        if job is None or job.next_run_time is None:
            return "-"
        moment: datetime = job.next_run_time
        return format_local(moment, self.settings.schedule.timezone)

    def heartbeat(self) -> None:
        """Renew the lock; stop everything if another process took it over."""
        try:
            still_ours = renew_lock(self.engine, self.holder)
        except Exception:
            log.exception("could not renew the scheduler lock; will retry")
            return
        if not still_ours:
            holder = current_holder(self.engine)
            who = describe_holder(holder.holder) if holder else "nobody"
            log.error("the scheduler lock now belongs to %s: stopping", who)
            self.lock_lost = True
            self.stop(release=False)

    def _on_job_error(self, event: JobExecutionEvent) -> None:
        exc = event.exception
        if isinstance(exc, BulletinError):
            log.error("job %s failed: %s", event.job_id, exc)
        else:
            log.error("job %s failed", event.job_id, exc_info=(type(exc), exc, exc.__traceback__))

    def stop(self, *, release: bool = True, wait: bool = False) -> None:
        """Stop the jobs (a running one finishes in the background) and give up the lock."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        scheduler = self._scheduler
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=wait)
        _RUNNING.pop(self.key, None)
        if release:
            release_lock(self.engine, self.holder)
        log.info("scheduler stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped; True if it stopped."""
        return self._stopped.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._stopped.is_set()


@contextmanager
def running_scheduler(engine: Engine, settings: Settings, **options: Any) -> Iterator[BulletinScheduler]:
    """A started scheduler for the block (``bulletin serve`` runs one beside the web app)."""
    scheduler = BulletinScheduler(engine, settings, **options)
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.stop(wait=True)
