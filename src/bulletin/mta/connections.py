"""The SMTP connection threads of a send, and the message templates they personalise.

Each connection holds at most two messages: the one it writes and the next, whose envelope goes
out with it (PIPELINING); it personalises the one after while the server takes in the one just
written. Marks and answers go to the :class:`~bulletin.mta.journal.Journal`; the rule that a
message's data is written only once its mark and the answer two messages before it are durable
lives in :meth:`Connections._run`. :mod:`bulletin.mta.sender` claims the rows and drives them.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from sqlalchemy import Engine, select

from bulletin.app import links
from bulletin.compose import placeholders
from bulletin.config import Settings
from bulletin.db import reading
from bulletin.errors import BulletinError
from bulletin.models import EditionVariant
from bulletin.mta import mail
from bulletin.mta.journal import Journal
from bulletin.mta.ledger import Claimed, Outcome
from bulletin.mta.ratelimit import Limiter, Permit
from bulletin.mta.smtp import Envelope, SmtpFailure, Transport

log = logging.getLogger(__name__)


# Variant messages kept built at once. The ledger is frozen variant by variant, so a send needs
# only a few at a time; retries may ask for an older one again, which is then built again.
TEMPLATES_KEPT = 16


class Templates:
    """Message templates of an edition's variants, built on first use, the last few kept."""

    def __init__(self, engine: Engine, settings: Settings, edition_id: int, signer: mail.DkimSigner | None) -> None:
        self.engine = engine
        self.settings = settings
        self.edition_id = edition_id
        self.signer = signer
        self._cache: OrderedDict[int, mail.VariantTemplate] = OrderedDict()
        self._lock = threading.Lock()
        self._marker: str | None = None

    def _feedback_id(self, language: str) -> str:
        # Gmail's Feedback-ID: campaign:customer:mailtype:sender, to group complaints per edition.
        return f"{self.edition_id}.{language}:bulletin:newsletter:{self.settings.sender.list_id}"

    def get(self, variant_id: int) -> mail.VariantTemplate:
        # Every connection asks: a variant is built once even when two want it at the same time.
        with self._lock:
            template = self._cache.get(variant_id)
            if template is None:
                template = self._cache[variant_id] = self._build(variant_id)
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


class Connections:
    """The SMTP connection threads; each personalises its own messages while the server works.

    A connection holds at most two messages: the one it writes and the next, whose envelope
    goes out with it (PIPELINING). It personalises the message after those while the server
    takes in the one just written, so no thread hands messages to another. The mark of that
    message is submitted together with the answer of the one written, in one journal entry.
    """

    def __init__(
        self,
        settings: Settings,
        templates: Templates,
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
        # Claimed rows, in ledger order; a None ends the send (each connection leaves it for the next).
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
            if not self.connected_once.is_set():
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
            if handed_over:
                # The data may have reached the server: the row stays handed over, and the next
                # run reports it uncertain instead of sending it again without a word.
                self.journal.record(Outcome(item.delivery_id, item.subscriber_id, item.email, "", "unknown"))
            else:
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
