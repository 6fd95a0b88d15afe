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
  durable and the mark of message *n* is. A SIGKILL can therefore leave at most two delivered
  messages per connection without a recorded answer (those are the only possible duplicates),
  and at most three marked rows per connection unanswered: those, and only those, are reported
  uncertain by the next run;
- each commit of the journal also reads the edition's status: once it is paused or cancelled
  no mark is written, and every connection stops after the message it has in hand.

On SQLite one sender runs at a time (the ``sender`` lock of :mod:`bulletin.mta.locks`). On
PostgreSQL any number of workers claim batches with ``SELECT ... FOR UPDATE SKIP LOCKED``; each
keeps a heartbeat lock, and the rows of a worker found dead are recovered by the same rule.

:func:`send_edition` is the one path of a send, used by ``bulletin edition send``, the
scheduler and ``bulletin worker``: check the approval, pre-flight (DKIM key, one SMTP login),
start and freeze, send, finish.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select

from bulletin.app import links
from bulletin.app.workflow import finish_sending, get_edition
from bulletin.compose import placeholders
from bulletin.compose.approval import record_void, start_sending
from bulletin.config import Settings
from bulletin.db import is_sqlite, reading, transaction
from bulletin.errors import BulletinError, Conflict, NotFound
from bulletin.models import Delivery, DeliveryState, Edition, EditionStatus, EditionVariant
from bulletin.mta import mail
from bulletin.mta.clock import SYSTEM_CLOCK, Clock
from bulletin.mta.journal import Journal
from bulletin.mta.ledger import (
    INTERRUPTED_REASON,
    NO_NEWS_REASON,
    Claimed,
    Outcome,
    SendReport,
    claim_batch,
    delivery_counts,
    delivery_status,
    freeze_recipients,
    freeze_summary,
    iter_recipients,
    recipients_by_variant,
    recover_interrupted,
    retry_delay,
    sending_editions,
    unsettled,
)
from bulletin.mta.locks import SENDER_LOCK, holder_name, live_workers, sending_as, worker_alive
from bulletin.mta.ratelimit import Limiter, Permit, limiter_for
from bulletin.mta.smtp import Envelope, SmtpConfigError, SmtpFailure, SmtpTransport, Transport

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
# Message templates


# Variant messages kept built at once. The ledger is frozen variant by variant, so a send needs
# only a few at a time; retries may ask for an older one again, which is then built again.
TEMPLATES_KEPT = 16


class _Templates:
    """Message templates of an edition's variants, built on first use, the last few kept."""

    def __init__(self, engine: Engine, settings: Settings, edition_id: int, signer: mail.DkimSigner | None) -> None:
        self.engine = engine
        self.settings = settings
        self.edition_id = edition_id
        self.signer = signer
        self._cache: OrderedDict[int, mail.VariantTemplate] = OrderedDict()
        self._lock = threading.Lock()
        self._marker: str | None = None
        self.built = 0

    def _feedback_id(self, language: str) -> str:
        # Gmail's Feedback-ID: campaign:customer:mailtype:sender, to group complaints per edition.
        return f"{self.edition_id}.{language}:bulletin:newsletter:{self.settings.sender.list_id}"

    def get(self, variant_id: int) -> mail.VariantTemplate:
        # Every connection asks: a variant is built once even when two want it at the same time.
        with self._lock:
            template = self._cache.get(variant_id)
            if template is None:
                template = self._cache[variant_id] = self._build(variant_id)
                self.built += 1
                while len(self._cache) > TEMPLATES_KEPT:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(variant_id)
            return template

    def _build(self, variant_id: int) -> mail.VariantTemplate:
        with reading(self.engine) as session:
            row = session.execute(
                select(EditionVariant.subject, EditionVariant.html, EditionVariant.text, EditionVariant.language).where(
                    EditionVariant.id == variant_id, EditionVariant.edition_id == self.edition_id
                )
            ).first()
            if row is None:
                raise BulletinError(f"variant {variant_id} of edition {self.edition_id} is missing")
            if self._marker is None:
                self._marker = placeholders.edition_marker(session, self.edition_id)
        subject, html, text, language = row
        return mail.VariantTemplate.build(
            self.settings,
            subject=subject,
            html=html,
            text=text,
            marker=self._marker,
            extra_headers={"Feedback-ID": self._feedback_id(language)},
            signer=self.signer,
        )


def personalise(settings: Settings, template: mail.VariantTemplate, item: Claimed) -> bytes:
    """One subscriber's copy of a variant, ready for DATA: the one place placeholders are filled."""
    return template.personalise_for_smtp(
        mail.Recipient(
            email=item.email,
            name=item.name,
            message_id=item.message_id,
            unsubscribe_url=links.subscriber_url(
                settings, "unsubscribe", item.subscriber_id, item.email, item.link_nonce
            ),
            preferences_url=links.subscriber_url(
                settings, "preferences", item.subscriber_id, item.email, item.link_nonce
            ),
            delivery_id=item.delivery_id,
        )
    )


def envelope_sender(settings: Settings, item: Claimed) -> str:
    """The envelope sender (MAIL FROM) of one delivery: its VERP bounce address."""
    return mail.envelope_sender(settings, item.delivery_id)


# ---------------------------------------------------------------------------
# The connections


TransportFactory = Callable[[Settings], Transport]


@dataclass
class _Feed:
    """A connection's view of the work queue: whether it has seen its end."""

    ended: bool = False


@dataclass
class _Held:
    item: Claimed
    data: bytes | BaseException
    # The envelope sender (VERP), worked out once: it is needed to announce the message and to send it.
    mail_from: str = ""
    # The journal ticket of this message's mark (0: not marked, the message must not go out).
    ticket: int = 0


class _Connections:
    """The SMTP connection threads; each personalises its own messages while the server works.

    A connection holds at most two messages: the one it writes and the next, whose envelope
    goes out with it (PIPELINING). It personalises the message after those while the server
    takes in the one just written, so no thread hands messages to another. The mark of that
    message is submitted together with the answer of the one written, in one journal entry.
    """

    def __init__(
        self,
        settings: Settings,
        templates: _Templates,
        limiter: Limiter,
        transport_factory: TransportFactory,
        journal: Journal,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.limiter = limiter
        self.transport_factory = transport_factory
        self.journal = journal
        self.stop = stop
        self.errors: list[BaseException] = []
        # Claimed rows, in ledger order; one None per connection ends the send.
        self.work: queue.Queue[Claimed | None] = queue.Queue()
        self.connected_once = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, name=f"smtp-{n}", daemon=True) for n in range(settings.smtp.connections)
        ]
        for thread in self.threads:
            thread.start()

    def _release(self, item: Claimed) -> None:
        self.journal.record(Outcome(item.delivery_id, item.subscriber_id, item.email, "", "released"))

    def _next(self, feed: _Feed, *, block: bool) -> _Held | None:
        """The next claimed row, personalised (or holding the error that prevented it); None if there is none now."""
        while not feed.ended:
            try:
                item = self.work.get(block=block)
            except queue.Empty:
                return None
            if item is None:
                # The end: leave it for the connections that have not seen it yet.
                self.work.put(None)
                feed.ended = True
                return None
            if self.stop.is_set():
                self._release(item)
                continue
            try:
                data: bytes | BaseException = personalise(self.settings, self.templates.get(item.variant_id), item)
            except Exception as exc:  # reported when its turn comes
                data = exc
            return _Held(item, data, envelope_sender(self.settings, item))
        return None

    def _submit(self, entry: _Held, outcome: Outcome | None) -> None:
        """Submit an answer and the mark of ``entry`` (if it is a message and the send goes on) as one ticket."""
        mark = isinstance(entry.data, bytes) and not self.stop.is_set()
        ticket = self.journal.submit(outcome, entry.item if mark else None)
        if mark:
            entry.ticket = ticket

    def _run(self) -> None:
        transport = self.transport_factory(self.settings)
        held: deque[_Held] = deque()
        feed = _Feed()
        permit_ahead: Permit | None = None

        def prepare_after() -> None:
            # While the server takes in a message: personalise the one after the next.
            if len(held) < 2:
                entry = self._next(feed, block=False)
                if entry is not None:
                    held.append(entry)

        try:
            while True:
                if not held:
                    entry = self._next(feed, block=True)
                    if entry is None:
                        return
                    self._submit(entry, None)
                    held.append(entry)
                if len(held) == 1:
                    following = self._next(feed, block=False)
                    if following is not None:
                        self._submit(following, None)
                        held.append(following)
                entry = held.popleft()
                permit, permit_ahead = permit_ahead, None
                if self.stop.is_set() or (not entry.ticket and isinstance(entry.data, bytes)):
                    self._give_back(entry, permit)
                    continue
                if isinstance(entry.data, BaseException):
                    self._give_back(entry, permit)
                    self._abort(entry.data)
                    continue
                # The mark of this message, and the answer to the one two before it, are durable.
                if not self.journal.wait(entry.ticket):
                    self._give_back(entry, permit)
                    continue
                then = None
                following = held[0] if held else None
                mail_from = entry.mail_from
                # Announce the next one only if it is a marked message and the rate limit lets it go out now.
                if following is not None and isinstance(following.data, bytes) and following.ticket:
                    permit_ahead = self.limiter.permit_now()
                    if permit_ahead is not None:
                        then = Envelope(following.mail_from, following.item.email, len(following.data))
                outcome = self._send(
                    transport, mail_from, entry.item, entry.data, permit=permit, then=then, meanwhile=prepare_after
                )
                if outcome is None:
                    continue
                # The answer, with the mark of the message personalised meanwhile, if there is one.
                unmarked = held[-1] if held and not held[-1].ticket else None
                if unmarked is not None:
                    self._submit(unmarked, outcome)
                else:
                    self.journal.submit(outcome, None)
        finally:
            if permit_ahead is not None:
                self.limiter.settle(permit_ahead, used=False)
            for leftover in held:
                self._release(leftover.item)
            with suppress(Exception):
                transport.close()

    def _give_back(self, entry: _Held, permit: Permit | None) -> None:
        self._release(entry.item)
        if permit is not None:
            self.limiter.settle(permit, used=False)

    def _send(
        self,
        transport: Transport,
        mail_from: str,
        item: Claimed,
        data: bytes,
        *,
        permit: Permit | None,
        then: Envelope | None,
        meanwhile: Callable[[], None] | None = None,
    ) -> Outcome | None:
        """Hand one message over; return its outcome, or None when the whole send must stop."""
        handed_over = False
        try:
            if permit is None:
                permit = self.limiter.permit(self.stop)
                if permit is None:
                    self._release(item)
                    return None
            # From here the server may take the message in: its permit counts until the answer.
            handed_over = True
            reply = transport.send_bytes(mail_from, item.email, data, stuffed=True, then=then, meanwhile=meanwhile)
            self.connected_once.set()
            return Outcome(item.delivery_id, item.subscriber_id, item.email, reply, "sent")
        except SmtpFailure as failure:
            if failure.stage == "connect" and failure.temporary and not self.connected_once.is_set():
                # The server cannot be reached at all: stop rather than defer every row.
                self._release(item)
                self._abort(BulletinError(f"SMTP server unreachable: {failure.reply}"))
                return None
            return Outcome(
                item.delivery_id,
                item.subscriber_id,
                item.email,
                failure.reply if failure.stage != "connect" else f"connect: {failure.reply}",
                "temporary" if failure.temporary else "permanent",
                bounce=failure.is_recipient_bounce,
            )
        except BulletinError as exc:  # SMTP settings to fix, an unreadable DKIM key, a missing variant
            self._release(item)
            self._abort(exc)
        except Exception as exc:  # a bug must not leave the row claimed forever
            log.exception("sending to %s failed", item.email)
            self._release(item)
            self._abort(exc)
        finally:
            if permit is not None:
                self.limiter.settle(permit, used=handed_over)
        return None

    def _abort(self, error: BaseException) -> None:
        self.errors.append(error)
        self.stop.set()
        self.journal.nudge()

    def shutdown(self) -> None:
        self.stop.set()
        self.work.put(None)
        for thread in self.threads:
            thread.join()


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
        templates = _Templates(engine, settings, edition_id, signer or mail.DkimSigner.from_settings(settings))
        stop = threading.Event()
        journal = Journal(engine, settings, edition_id, worker, report, stop, clock)
        # On PostgreSQL the limit is shared with every other worker through the database.
        own_limiter = limiter or limiter_for(engine, settings, worker, holder_alive=worker_alive, clock=clock)
        connections = _Connections(settings, templates, own_limiter, transport_factory, journal, stop)
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
    connections: _Connections,
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
