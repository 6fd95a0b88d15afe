"""The sender: works through the delivery ledger over SMTP, safe to kill at any moment.

The rules that make a send safe and its report true (see :mod:`bulletin.mta.ledger`):

- the recipient list is frozen once, in one transaction, when the send starts;
- rows are claimed (``sending``) in batches ahead of the connections; claiming alone promises
  nothing, so a claimed row found after a crash is simply due again;
- just before a connection writes a message's data to the server, the row's ``handed_at`` is
  committed; the server's answer is committed as soon as it arrives. One writer thread, the
  journal, commits whatever marks and answers are waiting, back to back (group commit), so the
  crash window is one commit, never a timer; no transaction is held while talking SMTP;
- a connection writes the data of message *n* only once the answer to message *n - 2* is
  durable and the mark of message *n* is (the mark travels with that answer, in one commit). A
  SIGKILL can therefore leave at most two delivered messages per connection without a recorded
  answer (those are the only possible duplicates), and at most two marked rows per connection
  unanswered: those, and only those, are reported uncertain by the next run;
- a mark is written only while the edition is neither paused nor cancelled (the same statement
  reads its status); once one is refused every connection stops after the message in hand.

On SQLite one sender runs at a time (the ``sender`` lock of :mod:`bulletin.mta.locks`). On
PostgreSQL any number of workers claim batches with ``SELECT ... FOR UPDATE SKIP LOCKED``; each
keeps a heartbeat lock, and the rows of a worker found dead are recovered by the same rule.

The connection threads and the templates they personalise are in :mod:`bulletin.mta.connections`,
the journal in :mod:`bulletin.mta.journal`, the frozen list in :mod:`bulletin.mta.recipients`.
:func:`send_edition` is the one path of a send, used by ``bulletin edition send``, the
scheduler and ``bulletin worker``: check the approval, pre-flight (DKIM key, one SMTP login),
start and freeze, send, finish.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from bulletin.app.workflow import finish_sending, get_edition
from bulletin.compose.approval import record_void, start_sending
from bulletin.config import Settings
from bulletin.db import is_sqlite, reading, transaction
from bulletin.errors import BulletinError, Conflict, NotFound
from bulletin.models import Delivery, DeliveryState, Edition, EditionStatus
from bulletin.mta import mail
from bulletin.mta.clock import SYSTEM_CLOCK, Clock
from bulletin.mta.connections import Connections, Templates, TransportFactory
from bulletin.mta.journal import Journal
from bulletin.mta.ledger import (
    INTERRUPTED_REASON,
    SendReport,
    claim_batch,
    delivery_counts,
    delivery_status,
    recover_interrupted,
    retry_delay,
    sending_editions,
    unsettled,
)
from bulletin.mta.locks import SENDER_LOCK, holder_name, live_workers, sending_as, worker_alive
from bulletin.mta.ratelimit import Limiter, limiter_for
from bulletin.mta.recipients import (
    NO_NEWS_REASON,
    freeze_recipients,
    freeze_summary,
    iter_recipients,
    recipients_by_variant,
)
from bulletin.mta.smtp import SmtpConfigError, SmtpFailure, SmtpTransport

__all__ = [
    "INTERRUPTED_REASON",
    "NO_NEWS_REASON",
    "SENDER_LOCK",
    "PreflightError",
    "Progress",
    "SendInterrupted",
    "SendOutcome",
    "SendReport",
    "delivery_counts",
    "delivery_status",
    "freeze_recipients",
    "freeze_summary",
    "iter_recipients",
    "preflight",
    "recipients_by_variant",
    "retry_delay",
    "retry_due",
    "run_send",
    "send_edition",
    "sending_as",
    "sending_editions",
    "unsettled",
    "worker_name",
]

log = logging.getLogger(__name__)

D = DeliveryState
# How often the driver looks at the journal when nothing happens (progress, stop).
LOOK_EVERY = 0.25
# The longest wait for a deferred retry between two looks at the ledger.
IDLE_LOOK = 900.0


@dataclass
class Progress:
    """Sent so far out of the edition's ledger, for a progress bar."""

    total: int
    done: int
    report: SendReport


class PreflightError(BulletinError):
    """The DKIM key or the SMTP server failed the check made before a send starts."""


class SendInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a send; ``report`` says what this run handed over before it stopped."""

    def __init__(self, edition_id: int, report: SendReport) -> None:
        super().__init__(f"send of edition {edition_id} interrupted")
        self.edition_id = edition_id
        self.report = report


def worker_name(label: str = "sender") -> str:
    """A name for this process in the ledger and the locks: ``host:pid:label``."""
    return holder_name(label)


# ---------------------------------------------------------------------------
# Running a send


def _total(engine: Engine, edition_id: int) -> tuple[int, int]:
    with reading(engine) as session:
        counts = delivery_counts(session, edition_id)
    total = sum(counts.values())
    return total, counts["sent"] + counts["failed"] + counts["skipped"]


def _next_due(engine: Engine, edition_id: int) -> Any:
    with reading(engine) as session:
        return session.scalar(
            select(func.min(Delivery.next_attempt_at)).where(
                Delivery.edition_id == edition_id, Delivery.state.in_((D.DEFERRED, D.PENDING))
            )
        )


def _note_recovered(report: SendReport, recovered: list[tuple[int, str]]) -> None:
    report.uncertain += len(recovered)
    room = max(100 - len(report.uncertain_addresses), 0)
    report.uncertain_addresses += [email for _, email in recovered[:room]]


def _recover(engine: Engine, edition_id: int, worker: str, clock: Clock) -> list[tuple[int, str]]:
    live = None if is_sqlite(engine) else live_workers
    return recover_interrupted(engine, edition_id, worker, live=live, clock=clock)


def run_send(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    *,
    worker: str,
    wait_for_retries: bool = False,
    progress: Callable[[Progress], None] | None = None,
    transport_factory: TransportFactory = SmtpTransport,
    limiter: Limiter | None = None,
    clock: Clock = SYSTEM_CLOCK,
    signer: mail.DkimSigner | None = None,
) -> SendReport:
    """Send every due delivery of the edition; stop when none is due or the edition is halted.

    With ``wait_for_retries`` it also waits for deferred deliveries to come due and sends them,
    until every row is settled. Raises Conflict if another sender holds the SQLite lock,
    BulletinError when the SMTP settings are wrong or the server cannot be reached (the rows
    not yet handed over go back to the queue untouched), and :class:`SendInterrupted` on Ctrl-C
    once everything known has been written down.
    """
    with reading(engine) as session:
        if session.get(Edition, edition_id) is None:
            raise NotFound(f"no edition {edition_id}")
    started = clock.monotonic()
    report = SendReport(editions=[edition_id])
    with sending_as(engine, worker):
        _note_recovered(report, _recover(engine, edition_id, worker, clock))
        templates = Templates(engine, settings, edition_id, signer or mail.DkimSigner.from_settings(settings))
        stop = threading.Event()
        journal = Journal(engine, settings, edition_id, worker, report, stop, clock)
        # On PostgreSQL the limit is shared with every other worker through the database.
        own_limiter = limiter or limiter_for(engine, settings, worker, holder_alive=worker_alive, clock=clock)
        connections = Connections(settings, templates, own_limiter, transport_factory, journal, stop)
        try:
            _drive(
                engine, settings, edition_id, worker, connections, journal, report, progress, wait_for_retries, clock
            )
        except KeyboardInterrupt:
            interrupted = True
        else:
            interrupted = False
        finally:
            # Interrupted or done: let each connection finish its message, then write down everything known.
            connections.shutdown()
            journal.close()
            if limiter is None:
                own_limiter.close()
        report.elapsed = clock.monotonic() - started
        report.commits += journal.commits
        if interrupted:
            raise SendInterrupted(edition_id, report)
        if journal.failure is not None:
            raise BulletinError(f"the ledger could not be written: {journal.failure}") from journal.failure
        if connections.errors:
            raise connections.errors[0]
    return report


def _drive(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    worker: str,
    connections: Connections,
    journal: Journal,
    report: SendReport,
    progress: Callable[[Progress], None] | None,
    wait_for_retries: bool,
    clock: Clock,
) -> None:
    batch_size = max(settings.delivery.batch_size, 1)
    total, done = _total(engine, edition_id) if progress else (0, 0)
    claimed_count = 0
    exhausted = False
    last_progress = clock.monotonic()
    idle = threading.Event()
    while True:
        with journal.changed:
            in_flight = claimed_count - journal.resolved
            settled = journal.settled
        if journal.failure is not None:
            return
        stopping = connections.stop.is_set()
        # Keep the connections fed: claim the next batch while the current one is being sent.
        if not exhausted and not stopping and in_flight <= batch_size // 2:
            claimed, skipped, halted = claim_batch(engine, settings, edition_id, worker, batch_size, clock=clock)
            report.skipped += skipped
            done += skipped
            if halted:
                report.halted = True
                connections.stop.set()
            elif not claimed:
                # On PostgreSQL a worker may have died meanwhile: take over its rows before stopping.
                recovered = [] if is_sqlite(engine) else _recover(engine, edition_id, worker, clock)
                _note_recovered(report, recovered)
                exhausted = not recovered
            for item in claimed:
                connections.work.put(item)
            claimed_count += len(claimed)
            in_flight += len(claimed)
            if claimed:
                continue
        if progress and clock.monotonic() - last_progress >= LOOK_EVERY:
            progress(Progress(total=total, done=done + settled, report=report))
            last_progress = clock.monotonic()
        if in_flight == 0:
            if progress:
                progress(Progress(total=total, done=done + settled, report=report))
            if connections.stop.is_set() or not wait_for_retries:
                return
            # Idle until retries come due: hold no permits another worker could use.
            connections.limiter.flush()
            next_due = _next_due(engine, edition_id)
            if next_due is None:
                return
            # Long enough for an hourly retry in a few looks, short enough to notice a cancelled edition.
            clock.wait(idle, min(max((next_due - clock.now()).total_seconds(), 0.0), IDLE_LOOK))
            exhausted = False
            continue
        # Asleep until the rows in hand are half sent (all of them once none is left to claim).
        claiming = not (exhausted or connections.stop.is_set())
        journal.wait_resolved(claimed_count - (batch_size // 2 if claiming else 0), LOOK_EVERY)


# ---------------------------------------------------------------------------
# Pre-flight and the one send path


def preflight(settings: Settings, transport_factory: TransportFactory = SmtpTransport) -> mail.DkimSigner | None:
    """Load the DKIM key and open, authenticate and close one SMTP connection; return the signer.

    Raises PreflightError with one line saying what to fix.
    """
    try:
        signer = mail.DkimSigner.from_settings(settings)
    except BulletinError as exc:
        # One line, whatever the signing library said.
        where = f" (dkim.key_path = {settings.dkim.key_path})" if settings.dkim.key_path else ""
        raise PreflightError(f"DKIM: {' '.join(str(exc).split())}{where}") from None
    transport = transport_factory(settings)
    opener = getattr(transport, "open", None)
    try:
        if opener is not None:
            opener()
    except SmtpConfigError as exc:
        raise PreflightError(f"SMTP: {' '.join(str(exc).split())}") from None
    except SmtpFailure as failure:
        reply = " ".join(failure.reply.split())
        raise PreflightError(f"SMTP server {settings.smtp.host}:{settings.smtp.port}: {reply}") from None
    finally:
        with suppress(Exception):
            transport.close()
    return signer


@dataclass
class SendOutcome:
    """What one attempt to send an edition did."""

    edition_id: int
    started: bool
    status: EditionStatus
    report: SendReport | None = None
    refused: str | None = None
    # Rows added by freezing the list now (0 when resuming), and subscribers left out per variant key.
    added: int = 0
    without_variant: dict[str, int] = field(default_factory=dict)
    # Seconds the approval check, the pre-flight and freezing took before sending began.
    check_seconds: float = 0.0
    preflight_seconds: float = 0.0
    freeze_seconds: float = 0.0


def send_edition(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    *,
    actor: str,
    worker: str,
    wait_for_retries: bool = False,
    progress: Callable[[Progress], None] | None = None,
    lock: Callable[[], AbstractContextManager[Any]] | None = None,
    on_frozen: Callable[[SendOutcome], None] | None = None,
    preflight_checked: bool = False,
    transport_factory: TransportFactory = SmtpTransport,
    clock: Clock = SYSTEM_CLOCK,
) -> SendOutcome:
    """Start (or resume) an approved, scheduled or sending edition and send it.

    The steps, each its own short transaction and none held while talking SMTP: check the
    approval against the stored content hashes, the render fingerprint and the planned variants,
    re-rendering only an edition touched since its last full check (a void approval is recorded
    and the send refused); pre-flight (DKIM key, one SMTP login); move the edition to
    ``sending`` and freeze its list; send; mark it sent once every row is settled. A pre-flight
    failure raises PreflightError and leaves the edition as it was. ``lock`` is the right to
    send (default: :func:`~bulletin.mta.locks.sending_as` for ``worker``; the caller may
    already hold it); ``on_frozen`` is told how many rows were frozen before sending begins;
    ``preflight_checked`` skips the SMTP login when the caller just made it (the worker, at start).
    """
    held = lock() if lock is not None else sending_as(engine, worker)
    with held:
        began = clock.monotonic()
        # Re-rendered only if someone touched the edition since its last full check, in a reading
        # session; a void is recorded in a transaction of its own.
        problems = record_void(engine, settings, edition_id, actor=actor, full=None)
        with reading(engine) as session:
            status = get_edition(session, edition_id).status
        if problems:
            return SendOutcome(edition_id, False, status, refused="approval void: " + "; ".join(problems))
        if status not in (EditionStatus.APPROVED, EditionStatus.SCHEDULED, EditionStatus.SENDING):
            # Refused with the workflow's own line, before anything is contacted.
            with transaction(engine) as session:
                start_sending(session, settings, edition_id, actor)
        checked = clock.monotonic()
        if preflight_checked:
            signer = mail.DkimSigner.from_settings(settings)
        else:
            signer = preflight(settings, transport_factory)
        flown = clock.monotonic()
        with transaction(engine) as session:
            edition = start_sending(session, settings, edition_id, actor)
            added = freeze_recipients(session, settings, edition, clock=clock)
            summary = freeze_summary(session, edition_id) or {}
        outcome = SendOutcome(
            edition_id,
            True,
            EditionStatus.SENDING,
            added=added,
            without_variant=dict(summary.get("unmatched") or {}),
            check_seconds=checked - began,
            preflight_seconds=flown - checked,
            freeze_seconds=clock.monotonic() - flown,
        )
        if on_frozen is not None:
            on_frozen(outcome)
        outcome.report = run_send(
            engine,
            settings,
            edition_id,
            worker=worker,
            wait_for_retries=wait_for_retries,
            progress=progress,
            transport_factory=transport_factory,
            clock=clock,
            signer=signer,
        )
        with transaction(engine) as session:
            outcome.status = finish_sending(session, edition_id, actor).status
        return outcome


def retry_due(
    engine: Engine,
    settings: Settings,
    *,
    worker: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
    transport_factory: TransportFactory = SmtpTransport,
) -> SendReport:
    """Send the deliveries now due (deferred retries, resumed rows) of every edition that is sending."""
    report = SendReport()
    for edition_id in sending_editions(engine):
        try:
            outcome = send_edition(
                engine,
                settings,
                edition_id,
                actor="scheduler",
                worker=worker or worker_name("retry"),
                transport_factory=transport_factory,
                clock=clock,
            )
        except Conflict as exc:
            # Another process is sending (SQLite): it will retry these itself.
            log.info("edition %s: retries left to the running sender: %s", edition_id, exc)
            continue
        if outcome.report is not None:
            report.merge(outcome.report)
    return report
