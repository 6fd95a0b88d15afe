"""The sender: works through the delivery ledger over SMTP, safe to kill at any moment.

The rules that make a send safe (see :mod:`bulletin.mta.ledger`):

- the recipient list is frozen once, in one transaction, when the send starts;
- a row moves to ``sending`` in a committed transaction *before* its SMTP transaction, and to
  ``sent`` only after the server's 250; no transaction stays open while talking SMTP;
- a row found in ``sending`` by a sender that starts (its previous owner died) may or may not
  have reached the server: it is counted in ``uncertain``, sent again and reported.

On SQLite one sender runs at a time: it holds the ``sender`` row of the ``locks`` table and
keeps its heartbeat fresh; a second one is refused with who holds it. On PostgreSQL any number
of workers claim batches with ``SELECT ... FOR UPDATE SKIP LOCKED``; each keeps a heartbeat
row, and rows left in ``sending`` by a worker whose heartbeat stopped are recovered.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from bulletin.app import links
from bulletin.app.workflow import finish_sending, get_edition
from bulletin.compose import placeholders
from bulletin.compose.approval import refresh_approval, start_sending
from bulletin.config import Settings
from bulletin.db import is_sqlite, reading, transaction
from bulletin.errors import BulletinError, Conflict, NotFound
from bulletin.models import Delivery, DeliveryState, Edition, EditionStatus, EditionVariant, Lock, Subscriber, utcnow
from bulletin.mta import mail
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
    in_chunks,
    iter_recipients,
    recipients_by_variant,
    record_outcomes,
    retry_delay,
    sending_editions,
    unsettled,
)
from bulletin.mta.ratelimit import Limiter, Permit, limiter_for
from bulletin.mta.smtp import Envelope, SmtpFailure, SmtpTransport, Transport

__all__ = [
    "INTERRUPTED_REASON",
    "NO_NEWS_REASON",
    "Progress",
    "SendReport",
    "delivery_counts",
    "delivery_status",
    "finish_if_done",
    "freeze_recipients",
    "freeze_summary",
    "iter_recipients",
    "recipients_by_variant",
    "retry_delay",
    "retry_due",
    "run_send",
    "sending_as",
    "sending_editions",
    "unsettled",
    "worker_name",
]

log = logging.getLogger(__name__)

D = DeliveryState
SENDER_LOCK = "sender"
HEARTBEAT_SECONDS = 5.0
# A holder whose heartbeat is older than this is taken to be dead.
STALE_AFTER = timedelta(seconds=30)


@dataclass
class Progress:
    """Sent so far out of the edition's ledger, for a progress bar."""

    total: int
    done: int
    report: SendReport


# ---------------------------------------------------------------------------
# Holders: the SQLite sender lock and the PostgreSQL worker heartbeats


def worker_name(label: str = "sender") -> str:
    """A name for this process: ``host:pid:label``."""
    return f"{socket.gethostname()}:{os.getpid()}:{label}"


def _holder_is_alive(lock: Lock, now: datetime) -> bool:
    host, _, rest = lock.holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return now - lock.heartbeat_at < STALE_AFTER


def _worker_alive(session: Session, holder: str) -> bool:
    """Whether the PostgreSQL worker named ``holder`` still keeps its heartbeat."""
    lock = session.get(Lock, f"worker:{holder}"[:80])
    return lock is not None and lock.holder == holder and _holder_is_alive(lock, utcnow())


class Holder:
    """A row of ``locks`` kept fresh by a heartbeat thread while this process sends."""

    def __init__(self, engine: Engine, name: str, holder: str, *, exclusive: bool) -> None:
        self.engine = engine
        self.name = name
        self.holder = holder
        self.exclusive = exclusive
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        now = utcnow()
        with transaction(self.engine) as session:
            query = select(Lock).where(Lock.name == self.name)
            if not is_sqlite(self.engine):
                query = query.with_for_update()
            lock = session.scalars(query).first()
            if lock is not None and lock.holder != self.holder and self.exclusive and _holder_is_alive(lock, now):
                seconds = int((now - lock.heartbeat_at).total_seconds())
                raise Conflict(
                    f"a send is in progress: {lock.holder} has held the sender lock since "
                    f"{lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC (heartbeat {seconds}s ago); "
                    "wait for it to finish, or stop that process first"
                )
            if lock is None:
                session.add(Lock(name=self.name, holder=self.holder, acquired_at=now, heartbeat_at=now))
            else:
                lock.holder = self.holder
                lock.acquired_at = now
                lock.heartbeat_at = now
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with transaction(self.engine) as session:
                    session.execute(
                        update(Lock)
                        .where(Lock.name == self.name, Lock.holder == self.holder)
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:  # a busy database must not kill the heartbeat; the next beat retries
                log.warning("heartbeat of %s failed", self.name, exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with transaction(self.engine) as session:
            session.query(Lock).filter(Lock.name == self.name, Lock.holder == self.holder).delete()


# Holders taken by this process, so that a command holding the lock can call run_send.
_held: dict[tuple[str, str], int] = {}
_held_lock = threading.Lock()


@contextmanager
def sending_as(engine: Engine, worker: str) -> Iterator[None]:
    """Hold the right to send: the single sender lock on SQLite, a worker heartbeat on PostgreSQL.

    Raises Conflict on SQLite when another live process holds the lock. Re-entrant within a process.
    """
    name = SENDER_LOCK if is_sqlite(engine) else f"worker:{worker}"[:80]
    key = (engine.url.render_as_string(hide_password=True), name)
    with _held_lock:
        nested = _held.get(key, 0) > 0
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    holder = Holder(engine, name, worker, exclusive=True)
    holder.acquire()
    with _held_lock:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_lock:
            del _held[key]
        holder.release()


def recover_interrupted(engine: Engine, edition_id: int | None, worker: str) -> list[tuple[int, str]]:
    """Put rows left in ``sending`` by a dead sender back in the queue, counting them uncertain.

    Returns (delivery id, address) of each. On SQLite the caller holds the sender lock, so every
    such row is a leftover; on PostgreSQL only rows of workers whose heartbeat stopped are.
    """
    now = utcnow()
    with transaction(engine) as session:
        query = (
            select(Delivery.id, Subscriber.email, Delivery.claimed_by)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.state == D.SENDING)
        )
        if edition_id is not None:
            query = query.where(Delivery.edition_id == edition_id)
        rows = session.execute(query).all()
        if not is_sqlite(engine):
            live = {
                lock.holder
                for lock in session.scalars(select(Lock).where(Lock.name.like("worker:%")))
                if _holder_is_alive(lock, now)
            }
            live.add(worker)
            rows = [row for row in rows if row[2] not in live]
        ids = [row[0] for row in rows]
        for chunk in in_chunks(ids, 500):
            statement = (
                update(Delivery)
                .where(Delivery.id.in_(chunk), Delivery.state == D.SENDING)
                .values(
                    state=D.PENDING,
                    uncertain=Delivery.uncertain + 1,
                    claimed_by=None,
                    next_attempt_at=None,
                    last_reply=INTERRUPTED_REASON,
                    updated_at=now,
                )
            )
            session.execute(statement)
    return [(row[0], row[1]) for row in rows]


# ---------------------------------------------------------------------------
# The engine


class _Templates:
    """Message templates of an edition's variants, built once each on first use."""

    def __init__(self, engine: Engine, settings: Settings, edition_id: int) -> None:
        self.engine = engine
        self.settings = settings
        self.edition_id = edition_id
        self.signer = mail.DkimSigner.from_settings(settings)
        self._cache: dict[int, mail.VariantTemplate] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()

    def _feedback_id(self, language: str) -> str:
        # Gmail's Feedback-ID: campaign:customer:mailtype:sender, to group complaints per edition.
        return f"{self.edition_id}.{language}:bulletin:newsletter:{self.settings.sender.list_id}"

    def get(self, variant_id: int) -> mail.VariantTemplate:
        template = self._cache.get(variant_id)
        if template is not None:
            return template
        # One lock per variant: a connection waits only for the template it needs.
        with self._lock:
            lock = self._locks.setdefault(variant_id, threading.Lock())
        with lock:
            template = self._cache.get(variant_id)
            if template is None:
                template = self._cache[variant_id] = self._build(variant_id)
        return template

    def _build(self, variant_id: int) -> mail.VariantTemplate:
        with reading(self.engine) as session:
            variant = session.get(EditionVariant, variant_id)
            if variant is None:
                raise BulletinError(f"variant {variant_id} of edition {self.edition_id} is missing")
            return mail.VariantTemplate.build(
                self.settings,
                subject=variant.subject,
                html=variant.html,
                text=variant.text,
                marker=placeholders.edition_marker(session, variant.edition_id),
                extra_headers={"Feedback-ID": self._feedback_id(variant.language)},
                signer=self.signer,
            )


TransportFactory = Callable[[Settings], Transport]


class _Connections:
    """The SMTP connection threads, fed by one thread that personalises the messages.

    Personalising the next messages while the connections wait for the server's replies keeps
    each connection busy: a connection only ever takes a ready message and hands it over.
    """

    def __init__(
        self,
        settings: Settings,
        templates: _Templates,
        limiter: Limiter,
        transport_factory: TransportFactory,
        results: queue.Queue[Outcome | BaseException],
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.limiter = limiter
        self.transport_factory = transport_factory
        self.results = results
        self.work: queue.Queue[Claimed | None] = queue.Queue()
        # A few messages ready per connection; bounded so memory does not grow with the batch.
        self.ready: queue.Queue[tuple[Claimed, bytes | BaseException] | None] = queue.Queue(
            maxsize=4 * settings.smtp.connections
        )
        self.stop = threading.Event()
        self.connected_once = threading.Event()
        self.preparer = threading.Thread(target=self._prepare, name="personalise", daemon=True)
        self.threads = [
            threading.Thread(target=self._run, name=f"smtp-{n}", daemon=True) for n in range(settings.smtp.connections)
        ]
        self.preparer.start()
        for thread in self.threads:
            thread.start()

    def _release(self, item: Claimed) -> None:
        self.results.put(Outcome(item.delivery_id, item.subscriber_id, item.email, "", "released"))

    def _prepare(self) -> None:
        settings = self.settings
        secret = settings.secret_key
        base = settings.web.base_url.rstrip("/")
        unsubscribe, preferences = base + links.PATHS["unsubscribe"], base + links.PATHS["preferences"]
        while True:
            item = self.work.get()
            if item is None:
                for _ in self.threads:
                    self.ready.put(None)
                return
            if self.stop.is_set():
                self._release(item)
                continue
            try:
                template = self.templates.get(item.variant_id)
                data: bytes | BaseException = template.personalise_for_smtp(
                    mail.Recipient(
                        email=item.email,
                        name=item.name,
                        message_id=item.message_id,
                        unsubscribe_url=unsubscribe
                        + links.make_token(secret, "unsubscribe", item.subscriber_id, item.email, item.link_nonce),
                        preferences_url=preferences
                        + links.make_token(secret, "preferences", item.subscriber_id, item.email, item.link_nonce),
                        delivery_id=item.delivery_id,
                    )
                )
            except Exception as exc:  # reported by the connection that takes it
                data = exc
            self.ready.put((item, data))

    def _run(self) -> None:
        transport = self.transport_factory(self.settings)
        # The next entry, taken early so its envelope can go out with this one's end, and its permit.
        ahead: list[tuple[Claimed, bytes | BaseException] | None] = []
        permit_ahead: Permit | None = None
        try:
            while True:
                entry = ahead.pop() if ahead else self.ready.get()
                permit, permit_ahead = permit_ahead, None
                if entry is None:
                    return
                item, data = entry
                if self.stop.is_set():
                    self._release(item)
                    if permit is not None:
                        self.limiter.settle(permit, used=False)
                    continue
                then = None
                if isinstance(data, bytes):
                    with suppress(queue.Empty):
                        ahead.append(self.ready.get_nowait())
                    following = ahead[0] if ahead else None
                    # Announce it only if it is a message and the rate limit lets it go out now.
                    if following is not None and isinstance(following[1], bytes):
                        permit_ahead = self.limiter.permit_now()
                        if permit_ahead is not None:
                            then = Envelope(
                                mail.envelope_sender(self.settings, following[0].delivery_id),
                                following[0].email,
                                len(following[1]),
                            )
                mail_from = mail.envelope_sender(self.settings, item.delivery_id)
                outcome = self._send(transport, mail_from, item, data, permit=permit, then=then)
                if outcome is not None:
                    self.results.put(outcome)
        finally:
            if permit_ahead is not None:
                self.limiter.settle(permit_ahead, used=False)
            for leftover in ahead:
                if leftover is not None:
                    self._release(leftover[0])
            with suppress(Exception):
                transport.close()

    def _send(
        self,
        transport: Transport,
        mail_from: str,
        item: Claimed,
        data: bytes | BaseException,
        *,
        permit: Permit | None,
        then: Envelope | None,
    ) -> Outcome | None:
        """Hand one message over; return its outcome, or None when the whole send must stop."""
        handed_over = False
        try:
            if isinstance(data, BaseException):
                raise data
            if permit is None:
                permit = self.limiter.permit(self.stop)
                if permit is None:
                    self._release(item)
                    return None
            # From here the server may take the message in: its permit counts until the answer.
            handed_over = True
            reply = transport.send_bytes(mail_from, item.email, data, stuffed=True, then=then)
            self.connected_once.set()
            return Outcome(item.delivery_id, item.subscriber_id, item.email, reply, "sent")
        except SmtpFailure as failure:
            if failure.stage == "connect" and failure.temporary and not self.connected_once.is_set():
                # The server cannot be reached at all: stop rather than defer every row.
                self._abort(item, BulletinError(f"SMTP server unreachable: {failure.reply}"))
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
            self._abort(item, exc)
        except Exception as exc:  # a bug must not leave the row claimed forever
            log.exception("sending to %s failed", item.email)
            self._abort(item, exc)
        finally:
            if permit is not None:
                self.limiter.settle(permit, used=handed_over)
        return None

    def _abort(self, item: Claimed, error: BaseException) -> None:
        self._release(item)
        self.results.put(error)
        self.stop.set()

    def shutdown(self) -> None:
        self.work.put(None)
        self.preparer.join()
        for thread in self.threads:
            thread.join()


def _total(engine: Engine, edition_id: int) -> tuple[int, int]:
    with reading(engine) as session:
        counts = delivery_counts(session, edition_id)
    total = sum(counts.values())
    return total, counts["sent"] + counts["failed"] + counts["skipped"]


def _next_due(engine: Engine, edition_id: int) -> datetime | None:
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
) -> SendReport:
    """Send every due delivery of the edition; stop when none is due or the edition is halted.

    With ``wait_for_retries`` it also waits for deferred deliveries to come due and sends them,
    until every row is settled. Raises Conflict if another sender holds the SQLite lock, and
    BulletinError when the SMTP settings are wrong or the server cannot be reached (the rows
    not yet attempted go back to the queue untouched).
    """
    with reading(engine) as session:
        edition = session.get(Edition, edition_id)
        if edition is None:
            raise NotFound(f"no edition {edition_id}")
    started = time.monotonic()
    report = SendReport(editions=[edition_id])
    with sending_as(engine, worker):
        _note_recovered(report, recover_interrupted(engine, edition_id, worker))
        templates = _Templates(engine, settings, edition_id)
        results: queue.Queue[Outcome | BaseException] = queue.Queue()
        # On PostgreSQL the limit is shared with every other worker through the database.
        own_limiter = limiter or limiter_for(engine, settings, worker, holder_alive=_worker_alive)
        connections = _Connections(settings, templates, own_limiter, transport_factory, results)
        pending: list[Outcome] = []
        try:
            _drive(
                engine, settings, edition_id, worker, connections, results, pending, report, progress, wait_for_retries
            )
        finally:
            # Interrupted or done: let each connection finish its message, then write down everything known.
            connections.stop.set()
            connections.shutdown()
            while not results.empty():
                item = results.get()
                if isinstance(item, Outcome):
                    pending.append(item)
            try:
                record_outcomes(engine, settings, pending, worker, report)
            finally:
                if limiter is None:
                    own_limiter.close()
    report.elapsed = time.monotonic() - started
    return report


def _drive(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    worker: str,
    connections: _Connections,
    results: queue.Queue[Outcome | BaseException],
    pending: list[Outcome],
    report: SendReport,
    progress: Callable[[Progress], None] | None,
    wait_for_retries: bool,
) -> None:
    batch_size = max(settings.delivery.batch_size, 1)
    total, done = _total(engine, edition_id) if progress else (0, 0)
    in_flight = 0
    exhausted = False
    failure: BaseException | None = None
    last_write = time.monotonic()
    while True:
        # Keep the connections fed: claim the next batch while the current one is being sent.
        if not exhausted and not report.halted and failure is None and in_flight <= batch_size // 2:
            claimed, skipped, halted = claim_batch(engine, edition_id, worker, batch_size)
            report.skipped += skipped
            done += skipped
            if halted:
                report.halted = True
            elif not claimed:
                # On PostgreSQL a worker may have died meanwhile: take over its rows before stopping.
                recovered = [] if is_sqlite(engine) else recover_interrupted(engine, edition_id, worker)
                _note_recovered(report, recovered)
                exhausted = not recovered
            for item in claimed:
                connections.work.put(item)
            in_flight += len(claimed)
        if in_flight == 0:
            if pending:
                record_outcomes(engine, settings, pending, worker, report)
                pending.clear()
            if failure is not None:
                raise failure
            if report.halted or not wait_for_retries:
                return
            # Idle until retries come due: hold no permits another worker could use.
            connections.limiter.flush()
            # Everything due is done; wait for the next deferred row to come due.
            next_due = _next_due(engine, edition_id)
            if next_due is None:
                return
            time.sleep(min(max((next_due - utcnow()).total_seconds(), 0.05), 5.0))
            exhausted = False
            continue
        result: Outcome | BaseException | None
        try:
            result = results.get(timeout=0.2)
        except queue.Empty:
            result = None
        while result is not None:
            if isinstance(result, BaseException):
                failure = failure or result
            else:
                pending.append(result)
                in_flight -= 1
                if result.kind in ("sent", "permanent"):
                    done += 1
            try:
                result = results.get_nowait()
            except queue.Empty:
                result = None
        if pending and (len(pending) >= 200 or time.monotonic() - last_write > 0.25 or in_flight == 0):
            record_outcomes(engine, settings, pending, worker, report)
            pending.clear()
            last_write = time.monotonic()
            if progress:
                progress(Progress(total=total, done=done, report=report))


def retry_due(engine: Engine, settings: Settings, *, worker: str | None = None) -> SendReport:
    """Send the deliveries now due (deferred retries, resumed rows) of every edition that is sending."""
    report = SendReport()
    for edition_id in sending_editions(engine):
        try:
            report.merge(run_send(engine, settings, edition_id, worker=worker or worker_name("retry")))
        except Conflict as exc:
            # Another process is sending (SQLite): it will retry these itself.
            log.info("edition %s: retries left to the running sender: %s", edition_id, exc)
    return report


def finish_if_done(engine: Engine, edition_id: int, actor: str) -> EditionStatus:
    """Mark the edition sent when nothing is left to send; return its status."""
    with transaction(engine) as session:
        return finish_sending(session, edition_id, actor).status


@dataclass
class SendOutcome:
    """What one attempt to send an edition did."""

    edition_id: int
    started: bool
    status: EditionStatus
    report: SendReport | None = None
    refused: str | None = None


def send_edition(engine: Engine, settings: Settings, edition_id: int, *, actor: str, worker: str) -> SendOutcome:
    """Start (or resume) an approved edition and send it: verify, freeze recipients, send, finish.

    Each step is its own short transaction; no transaction is held while talking SMTP.
    """
    with transaction(engine) as session:
        edition = get_edition(session, edition_id)
        problems = refresh_approval(session, settings, edition, actor=actor)
        if problems:
            return SendOutcome(edition_id, False, edition.status, refused="approval void: " + "; ".join(problems))
    with transaction(engine) as session:
        edition = start_sending(session, settings, edition_id, actor)
        freeze_recipients(session, settings, edition)
    report = run_send(engine, settings, edition_id, worker=worker)
    with transaction(engine) as session:
        edition = finish_sending(session, edition_id, actor)
        return SendOutcome(edition_id, True, edition.status, report=report)
