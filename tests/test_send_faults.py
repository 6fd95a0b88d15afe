"""What the sender does when the SMTP server misbehaves: retry, give up, fail alone, never lose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bulletin.config import Settings
from bulletin.db import reading
from bulletin.models import DeliveryState
from bulletin.mta.sender import delivery_status, retry_delay, retry_due, run_send, unsettled

from .factories import smtp_server_both_ways  # noqa: F401  (the smtp_server fixture of this module)
from .send_fixtures import FakeClock, freeze, ledger, sending_world
from .smtp_server import RecordingSMTPServer


def prepare(
    tmp_path: Path, server: RecordingSMTPServer, count: int = 12, **overrides: Any
) -> tuple[Settings, Engine, int, list[str]]:
    settings, engine, edition_id, emails = sending_world(tmp_path, server, count, **overrides)
    freeze(engine, settings, edition_id)
    return settings, engine, edition_id, emails


@pytest.mark.parametrize(
    "reply",
    ["421 4.7.0 try again later, closing connection", "451 4.7.1 greylisted: please retry"],
)
def test_temporary_refusal_at_rcpt_is_deferred_then_delivered(
    tmp_path: Path, smtp_server: RecordingSMTPServer, reply: str
) -> None:
    settings, engine, edition_id, emails = prepare(tmp_path, smtp_server)
    target = emails[4]
    smtp_server.faults.rcpt_replies_once[target] = [reply, reply]

    report = run_send(engine, settings, edition_id, worker="w", wait_for_retries=True, clock=FakeClock())

    assert report.sent == 12 and report.failed == 0 and report.deferred == 2
    assert sorted(smtp_server.recipients()) == sorted(emails)
    row = ledger(engine, edition_id)[target]
    assert row.state is DeliveryState.SENT and row.attempts == 3
    assert smtp_server.refusals == [(target, reply), (target, reply)]
    assert any(reply in error for error in report.errors)


def test_recipient_refused_with_550_fails_alone(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    settings, engine, edition_id, emails = prepare(tmp_path, smtp_server)
    smtp_server.faults.rcpt_replies[emails[3]] = "550 5.1.1 <unknown>: Recipient address rejected"

    report = run_send(engine, settings, edition_id, worker="w", wait_for_retries=True, clock=FakeClock())

    assert report.sent == 11 and report.failed == 1 and report.deferred == 0
    assert sorted(smtp_server.recipients()) == sorted(e for e in emails if e != emails[3])
    row = ledger(engine, edition_id)[emails[3]]
    assert row.state is DeliveryState.FAILED and row.attempts == 1
    assert row.last_reply == "550 5.1.1 <unknown>: Recipient address rejected"
    with reading(engine) as session:
        status = delivery_status(session, edition_id)
    assert status["counts"]["failed"] == 1
    assert status["last_errors"][0]["email"] == emails[3]


def test_451_after_data_is_retried(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    settings, engine, edition_id, emails = prepare(tmp_path, smtp_server)
    smtp_server.faults.data_replies_for[emails[0]] = ["451 4.3.0 temporary local problem"]
    report = run_send(engine, settings, edition_id, worker="w", wait_for_retries=True, clock=FakeClock())
    assert report.sent == 12 and report.deferred == 1
    assert sorted(smtp_server.recipients()) == sorted(emails)


def test_connection_dropped_mid_data_is_retried_on_a_new_connection(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings, engine, edition_id, emails = prepare(tmp_path, smtp_server, count=20)
    smtp_server.faults.drop_mid_data = 3

    report = run_send(engine, settings, edition_id, worker="w", wait_for_retries=True, clock=FakeClock())

    assert report.sent == 20 and report.deferred == 3 and report.failed == 0
    # Cut bodies were not kept: everyone got exactly one copy.
    assert sorted(smtp_server.recipients()) == sorted(emails)
    dropped = [r for r in ledger(engine, edition_id).values() if r.attempts == 2]
    assert len(dropped) == 3


def test_connection_dropped_after_data_may_duplicate_but_never_loses(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings, engine, edition_id, emails = prepare(tmp_path, smtp_server)
    smtp_server.faults.drop_on_data = 2
    report = run_send(engine, settings, edition_id, worker="w", wait_for_retries=True, clock=FakeClock())
    assert report.sent == 12 and report.deferred == 1
    assert set(smtp_server.recipients()) == set(emails)


def test_stalled_server_times_out_and_the_message_is_retried(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    settings, engine, edition_id, emails = prepare(tmp_path, smtp_server, count=6, smtp={"timeout": 0.3})
    smtp_server.faults.stall_seconds = 1.0
    smtp_server.faults.stall_count = 1

    report = run_send(engine, settings, edition_id, worker="w", wait_for_retries=True, clock=FakeClock())

    assert report.sent == 6 and report.deferred == 1
    assert any("timed out during DATA" in error for error in report.errors)
    assert set(smtp_server.recipients()) == set(emails)
    retried = [r for r in ledger(engine, edition_id).values() if r.attempts == 2]
    assert len(retried) == 1 and retried[0].state is DeliveryState.SENT


def test_retries_back_off_exponentially_and_give_up(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    # Real-life waits (5 minutes doubling up to an hour, give up after a day), on the fake clock.
    settings, engine, edition_id, emails = prepare(
        tmp_path,
        smtp_server,
        count=3,
        delivery={"retry_first": 300.0, "retry_max": 3600.0, "give_up_after": 86400.0},
    )
    smtp_server.faults.rcpt_replies[emails[1]] = "452 4.2.2 mailbox full"
    assert [retry_delay(settings, n) for n in range(1, 7)] == [300, 600, 1200, 2400, 3600, 3600]
    clock = FakeClock()
    began = clock.now()

    report = run_send(engine, settings, edition_id, worker="w", wait_for_retries=True, clock=clock)

    row = ledger(engine, edition_id)[emails[1]]
    # Waits of 300 + 600 + 1200 + 2400 + 3600 x 22 = 83,700 s; one more would pass a day: 27 attempts.
    assert row.state is DeliveryState.FAILED and row.attempts == 27
    assert row.last_reply == "gave up after 27 attempts: 452 4.2.2 mailbox full"
    assert report.sent == 2 and report.failed == 1 and report.deferred == 26
    assert len(smtp_server.refusals) == 27
    # The sender waited on its clock for every retry to come due, and no longer.
    waited = (clock.now() - began).total_seconds()
    assert 83_700 <= waited < 83_700 + 27 * 6


def test_without_waiting_deferred_rows_are_left_for_later(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    settings, engine, edition_id, emails = prepare(
        tmp_path, smtp_server, count=4, delivery={"retry_first": 300.0, "retry_max": 3600.0, "give_up_after": 86400.0}
    )
    smtp_server.faults.rcpt_replies_once[emails[0]] = ["451 4.7.1 greylisted"]
    clock = FakeClock()

    first = run_send(engine, settings, edition_id, worker="w", clock=clock)
    assert first.sent == 3 and first.deferred == 1 and first.next_retry_at is not None
    # Due retry_first seconds after the refusal, on the sender's clock.
    assert abs((first.next_retry_at - clock.now()).total_seconds() - 300) < 1
    assert unsettled(engine, edition_id) == 1
    # Not yet due: nothing happens, however often the scheduler looks.
    clock.advance(299)
    assert retry_due(engine, settings, clock=clock).attempted == 0
    clock.advance(2)
    later = retry_due(engine, settings, clock=clock)
    assert later.sent == 1
    assert unsettled(engine, edition_id) == 0


def test_a_bug_after_the_data_went_out_leaves_the_row_uncertain_not_silently_resent(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    from bulletin.mta.smtp import SmtpTransport

    settings, engine, edition_id, emails = prepare(tmp_path, smtp_server, count=6, smtp={"connections": 1})
    target = emails[2]

    class Broken(SmtpTransport):
        """The real connection, with a bug that strikes once the server took one message in."""

        def send_bytes(self, mail_from: str, recipient: str, data: bytes, **options: Any) -> str:
            reply = super().send_bytes(mail_from, recipient, data, **options)
            if recipient == target:
                raise RuntimeError("a bug after the answer")
            return reply

    with pytest.raises(RuntimeError, match="a bug after the answer"):
        run_send(engine, settings, edition_id, worker="w", transport_factory=Broken)
    assert smtp_server.recipients().count(target) == 1

    # The next run cannot know whether the message arrived: it sends it again and says so.
    report = run_send(engine, settings, edition_id, worker="w2")
    assert report.uncertain == 1 and report.uncertain_addresses == [target]
    assert sorted(set(smtp_server.recipients())) == sorted(emails)
    assert ledger(engine, edition_id)[target].uncertain == 1
