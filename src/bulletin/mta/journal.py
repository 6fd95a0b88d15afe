"""The sender's journal: one writer thread committing hand-over marks and the server's answers.

Connections submit what they need written (a ``handed_at`` mark before a message's data, the
server's answer after it) and get a ticket; the writer commits whatever is waiting, back to back
(group commit), and wakes the waiters once their ticket is durable. A commit that writes marks
also reads the edition's status, so a pause or a cancel stops the marks within one commit. The
hot path (marks and ``sent`` answers) goes through :class:`HandoverWriter`, on one DBAPI
connection; anything else through :func:`bulletin.mta.ledger.write_outcomes`.
"""

from __future__ import annotations

import logging
import threading
from contextlib import suppress
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from bulletin.config import Settings
from bulletin.db import is_sqlite, transaction
from bulletin.models.base import UTCDateTime
from bulletin.mta.clock import Clock
from bulletin.mta.ledger import HALTED, Claimed, Outcome, SendReport, is_halted, mark_handed, write_outcomes

log = logging.getLogger(__name__)


class HandoverWriter:
    """The hot path of the sender's journal: marks and ``sent`` answers in one short raw transaction.

    At thousands of messages a second, a commit happens every couple of messages; statements
    built and run through the ORM would cost more than the commit itself. This writer keeps one
    DBAPI connection. On SQLite a group commit is one ``UPDATE`` of marks and answers together,
    which reads the edition's status itself and commits on its own (one trip into the database,
    so the writer waits for the interpreter once); on PostgreSQL it is three statements (the
    status, the marks, the answers) in one transaction. Anything else (deferrals, failures,
    bounces, released rows) goes through :func:`write_outcomes`.
    """

    def __init__(self, engine: Engine, edition_id: int, worker: str) -> None:
        self.edition_id = edition_id
        self.worker = worker
        self.sqlite = is_sqlite(engine)
        self.raw = engine.raw_connection()
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._stamp = UTCDateTime().bind_processor(engine.dialect)
        self._status_sql = f"SELECT status FROM editions WHERE id = {mark}"
        self._mark_sql = (
            f"UPDATE deliveries SET handed_at = {mark}, message_id = {mark} "
            f"WHERE id = {mark} AND state = 'sending' AND claimed_by = {mark}"
        )
        self._sent_sql = (
            f"UPDATE deliveries SET state = 'sent', attempts = attempts + 1, last_reply = {mark}, "
            f"sent_at = {mark}, updated_at = {mark}, claimed_by = NULL, next_attempt_at = NULL "
            f"WHERE id = {mark} AND state = 'sending' AND claimed_by = {mark}"
        )
        self._halted_values = {status.value for status in HALTED}
        self._statements: dict[int, str] = {}

    def _one_statement(self, rows: int) -> str:
        """SQLite: the marks and answers of one commit as a single UPDATE, which commits on its own."""
        sql = self._statements.get(rows)
        if sql is None:
            halted = ", ".join(f"'{value}'" for value in sorted(self._halted_values))
            # ?1-?3 are the stamp, the worker and the edition; each row's four parameters follow.
            values = ", ".join(
                "({}, {}, {}, {})".format(*(f"?{4 + 4 * row + column}" for column in range(4))) for row in range(rows)
            )
            sql = self._statements[rows] = (
                f"WITH handed(id, answered, message_id, reply) AS (VALUES {values}) "
                "UPDATE deliveries SET "
                "handed_at = CASE WHEN handed.answered THEN deliveries.handed_at ELSE ?1 END, "
                "message_id = CASE WHEN handed.answered THEN deliveries.message_id ELSE handed.message_id END, "
                "state = CASE WHEN handed.answered THEN 'sent' ELSE deliveries.state END, "
                "attempts = deliveries.attempts + handed.answered, "
                "last_reply = CASE WHEN handed.answered THEN handed.reply ELSE deliveries.last_reply END, "
                "sent_at = CASE WHEN handed.answered THEN ?1 ELSE deliveries.sent_at END, "
                "updated_at = CASE WHEN handed.answered THEN ?1 ELSE deliveries.updated_at END, "
                "claimed_by = CASE WHEN handed.answered THEN NULL ELSE deliveries.claimed_by END, "
                "next_attempt_at = CASE WHEN handed.answered THEN NULL ELSE deliveries.next_attempt_at END "
                "FROM handed WHERE deliveries.id = handed.id AND deliveries.state = 'sending' "
                "AND deliveries.claimed_by = ?2 AND (handed.answered "
                f"OR (SELECT status FROM editions WHERE id = ?3) NOT IN ({halted}))"
            )
        return sql

    def _commit_sqlite(self, marks: list[Claimed], sent: list[Outcome], when: Any) -> bool:
        # One statement in autocommit mode: one step of the database (its commit included) per
        # group commit, so the writer waits for the interpreter once, not once per row.
        params: list[Any] = [when, self.worker, self.edition_id]
        for claim in marks:
            params += (claim.delivery_id, 0, claim.message_id, None)
        for outcome in sent:
            params += (outcome.delivery_id, 1, None, outcome.reply[:1000])
        sql = self._one_statement(len(marks) + len(sent))
        cursor = self.raw.cursor()
        try:
            cursor.execute(sql, params)
            written = cursor.rowcount
            if written == len(marks) + len(sent) or not marks:
                return False
            # A mark was refused: the edition is halted (on SQLite no one else takes this sender's rows).
            cursor.execute(self._status_sql, (self.edition_id,))
            row = cursor.fetchone()
            return row is not None and row[0] in self._halted_values
        finally:
            cursor.close()

    def commit(self, marks: list[Claimed], sent: list[Outcome], now: datetime) -> bool:
        """Read the status, write the marks (unless halted) and the answers, commit; return halted."""
        when: Any = self._stamp(now) if self._stamp else now
        if self.sqlite:
            return self._commit_sqlite(marks, sent, when)
        cursor = self.raw.cursor()
        try:
            cursor.execute(self._status_sql, (self.edition_id,))
            row = cursor.fetchone()
            halted = row is not None and row[0] in self._halted_values
            if marks and not halted:
                cursor.executemany(self._mark_sql, [(when, c.message_id, c.delivery_id, self.worker) for c in marks])
            if sent:
                cursor.executemany(
                    self._sent_sql, [(o.reply[:1000], when, when, o.delivery_id, self.worker) for o in sent]
                )
            self.raw.commit()
            return halted
        except BaseException:
            with suppress(Exception):
                self.raw.rollback()
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        with suppress(Exception):
            self.raw.close()


class Journal:
    """Commits ``handed_at`` marks and the server's answers as they come, in group commits.

    Callers get a ticket for what they submit; :meth:`wait` returns once that ticket is
    durable. Each commit also reads the edition's status: once it is halted, marks are refused
    (waiters get False) and ``stop`` is set.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        edition_id: int,
        worker: str,
        report: SendReport,
        stop: threading.Event,
        clock: Clock,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.edition_id = edition_id
        self.worker = worker
        self.report = report
        self.stop = stop
        self.clock = clock
        # One lock, two conditions: submitters wake only the writer, a commit wakes the waiters.
        guard = threading.Lock()
        self.changed = threading.Condition(guard)
        self._work = threading.Condition(guard)
        # The driver sleeps until enough outcomes are in (it claims the next batch then), not every commit.
        self._resolved = threading.Condition(guard)
        self._resolved_at = 0
        self._marks: list[Claimed] = []
        self._outcomes: list[Outcome] = []
        self._issued = 0
        self._durable = 0
        self._closing = False
        self.halted = False
        self.failure: BaseException | None = None
        # Outcomes committed (released ones included), and those that settle a row (sent, failed).
        self.resolved = 0
        self.settled = 0
        self.commits = 0
        self._thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self._thread.start()

    def submit(self, outcome: Outcome | None, mark: Claimed | None) -> int:
        """Submit a server's answer and a mark together; return the one ticket that covers both."""
        with self._work:
            if outcome is not None:
                self._outcomes.append(outcome)
            if mark is not None:
                self._marks.append(mark)
            self._issued += 1
            self._work.notify()
            return self._issued

    def record(self, outcome: Outcome) -> int:
        return self.submit(outcome, None)

    def wait_resolved(self, count: int, timeout: float) -> None:
        """Wait until ``count`` outcomes are committed, the journal stops, or ``timeout`` seconds pass."""
        with self._resolved:
            if self.resolved < count and self.failure is None and not self.halted:
                self._resolved_at = count
                self._resolved.wait(timeout)
                self._resolved_at = 0

    def wait(self, ticket: int) -> bool:
        """Wait until ``ticket`` is durable; False if marks are refused (halted) or writing failed."""
        with self.changed:
            while self._durable < ticket and self.failure is None:
                self.changed.wait()
            return self.failure is None and not self.halted

    def nudge(self) -> None:
        """Wake whoever waits in :meth:`wait_resolved` (the send is stopping)."""
        with self._resolved:
            self._resolved.notify_all()

    def close(self) -> None:
        """Commit what is waiting and stop the writer."""
        with self._work:
            self._closing = True
            self._work.notify()
        self._thread.join()

    def _run(self) -> None:
        writer: HandoverWriter | None = None
        try:
            writer = HandoverWriter(self.engine, self.edition_id, self.worker)
            while True:
                with self._work:
                    while not (self._marks or self._outcomes or self._closing):
                        self._work.wait()
                    if not (self._marks or self._outcomes):
                        return
                    marks, self._marks = self._marks, []
                    outcomes, self._outcomes = self._outcomes, []
                    upto = self._issued
                halted, counted = self._commit(writer, marks, outcomes)
                self.report.merge(counted)
                settled = counted.sent + counted.failed
                with self.changed:
                    self._durable = upto
                    self.commits += 1
                    self.resolved += len(outcomes)
                    self.settled += settled
                    if halted and not self.halted:
                        self.halted = True
                        self.report.halted = True
                        self.stop.set()
                    self.changed.notify_all()
                    if self._resolved_at and (self.resolved >= self._resolved_at or self.halted):
                        self._resolved.notify_all()
        except BaseException as exc:  # the rows stay claimed: the next run sorts them out by the ledger's rule
            log.exception("the sender could not write to the ledger")
            with self.changed:
                self.failure = exc
                self.stop.set()
                self.changed.notify_all()
                self._resolved.notify_all()
        finally:
            if writer is not None:
                writer.close()

    def _commit(self, writer: HandoverWriter, marks: list[Claimed], outcomes: list[Outcome]) -> tuple[bool, SendReport]:
        """One transaction: the status, the marks (unless halted) and the outcomes; retried if the database is busy."""
        counted = SendReport()
        for attempt in range(5):
            try:
                now = self.clock.now()
                if all(o.kind == "sent" for o in outcomes):
                    halted = writer.commit(marks, outcomes, now)
                    counted.sent = len(outcomes)
                    return halted, counted
                with transaction(self.engine) as session:
                    halted = is_halted(session, self.edition_id)
                    if not halted:
                        mark_handed(session, marks, self.worker, now)
                    # A fresh report: counted only once the commit holds.
                    counted = SendReport()
                    write_outcomes(session, self.settings, outcomes, self.worker, counted, now)
                return halted, counted
            except OperationalError:
                if attempt == 4:
                    raise
                log.warning("the ledger is busy; writing again", exc_info=True)
                self.clock.sleep(0.05 * (attempt + 1))
            except Exception as exc:
                # A driver's own "database is locked" (raw connection) is retried the same way.
                if attempt == 4 or "locked" not in str(exc):
                    raise
                log.warning("the ledger is busy; writing again", exc_info=True)
                self.clock.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")
