"""The delivery ledger: freezing, sending, skipping, halting, the SQLite lock, recovery and bounces."""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from bulletin.app import workflow
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import Conflict
from bulletin.models import (
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    Lock,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    utcnow,
)
from bulletin.mta.sender import (
    NO_NEWS_REASON,
    SENDER_LOCK,
    delivery_counts,
    delivery_status,
    freeze_summary,
    run_send,
    worker_name,
)

from .factories import migrated_engine, subscriber_row
from .send_fixtures import add_subscribers, freeze, frozen_edition, ledger, make_edition, make_settings, sending_world
from .smtp_server import RecordingSMTPServer

REQUIRED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Precedence",
)


@pytest.fixture
def setup(tmp_path: Path, smtp_server: RecordingSMTPServer) -> tuple[Settings, Engine]:
    settings = make_settings(tmp_path, smtp_server)
    return settings, migrated_engine(settings)


def test_every_active_subscriber_gets_their_variant_once(
    setup: tuple[Settings, Engine], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine = setup
    emails = add_subscribers(engine, 45)
    edition_id = make_edition(engine, settings)
    assert freeze(engine, settings, edition_id) == 45

    report = run_send(engine, settings, edition_id, worker=worker_name("test"))

    assert report.sent == 45 and report.failed == report.deferred == report.uncertain == 0
    received = smtp_server.wait_for(45)
    assert sorted(smtp_server.recipients()) == sorted(emails)
    rows = ledger(engine, edition_id)
    with reading(engine) as session:
        people = {s.email: s for s in session.scalars(select(Subscriber))}
    for message in received:
        parsed = message.parse()
        email = message.recipients[0]
        for header in REQUIRED_HEADERS:
            assert parsed[header], header
        assert [d for part in parsed.walk() for d in part.defects] == []
        row = rows[email]
        assert row.state is DeliveryState.SENT and row.attempts == 1 and row.sent_at is not None
        assert row.last_reply == "250 2.0.0 queued"
        assert parsed["Message-ID"] == row.message_id
        person = people[email]
        topics = person.interests or "all topics"
        assert parsed["Subject"].startswith(f"[{person.language}] Bulletin {edition_id} — {topics} ·")
        assert parsed["Feedback-ID"].startswith(f"{edition_id}.{person.language}:")
        assert "/unsubscribe/" in parsed["List-Unsubscribe"]


def test_freeze_is_done_once_and_skips_empty_variants(setup: tuple[Settings, Engine]) -> None:
    settings, engine = setup
    add_subscribers(engine, 18)
    edition_id = make_edition(engine, settings, empty=(("en", "youth"),))
    assert freeze(engine, settings, edition_id) == 18
    # Subscribers who join after the freeze are not added by a resumed send.
    add_subscribers(engine, 5, start=100)
    assert freeze(engine, settings, edition_id) == 0
    rows = ledger(engine, edition_id)
    assert len(rows) == 18
    skipped = {email for email, row in rows.items() if row.state is DeliveryState.SKIPPED}
    assert len(skipped) == 2
    assert all(rows[email].last_reply == NO_NEWS_REASON for email in skipped)
    with reading(engine) as session:
        assert delivery_counts(session, edition_id) == {
            "pending": 16,
            "sending": 0,
            "sent": 0,
            "deferred": 0,
            "failed": 0,
            "skipped": 2,
        }


def test_subscriber_without_a_rendered_variant_is_reported(setup: tuple[Settings, Engine]) -> None:
    settings, engine = setup
    add_subscribers(engine, 6, languages=("fr", "en"), interests=("", "drugs"))
    edition_id = make_edition(engine, settings, interests=("",))
    assert freeze(engine, settings, edition_id) == 3
    with reading(engine) as session:
        summary = freeze_summary(session, edition_id)
    assert summary is not None
    assert summary["unmatched"] == {"fr|drugs": 2, "en|drugs": 1}


def test_unsubscribed_after_freezing_is_skipped(
    setup: tuple[Settings, Engine], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine = setup
    edition_id, emails = frozen_edition(engine, settings, 6)
    with transaction(engine) as session:
        person = session.scalars(select(Subscriber).where(Subscriber.email == emails[2])).one()
        person.status = SubscriberStatus.UNSUBSCRIBED

    report = run_send(engine, settings, edition_id, worker="w")

    assert report.sent == 5 and report.skipped == 1
    assert emails[2] not in smtp_server.recipients()
    row = ledger(engine, edition_id)[emails[2]]
    assert row.state is DeliveryState.SKIPPED
    assert row.last_reply == "skipped: subscriber is unsubscribed (changed after the send started)"


def test_paused_edition_stops_between_batches_and_resumes(
    setup: tuple[Settings, Engine], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine = setup
    edition_id, _ = frozen_edition(engine, settings, 30)

    # A slow server, so that the pause lands while the send is under way.
    smtp_server.faults.stall_seconds = 0.03
    settings = dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, connections=1))

    def pause_when_some_arrived() -> None:
        smtp_server.wait_for(3)
        with transaction(engine) as session:
            edition = session.get(Edition, edition_id)
            assert edition is not None
            edition.status = EditionStatus.PAUSED

    pauser = threading.Thread(target=pause_when_some_arrived)
    pauser.start()
    report = run_send(engine, settings, edition_id, worker="w")
    pauser.join()
    assert report.halted
    assert 0 < report.sent < 30
    with reading(engine) as session:
        counts = delivery_counts(session, edition_id)
    assert counts["sending"] == 0
    assert counts["sent"] == report.sent and counts["pending"] == 30 - report.sent

    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        edition.status = EditionStatus.SENDING
    smtp_server.faults.stall_seconds = 0
    second = run_send(engine, settings, edition_id, worker="w")
    assert report.sent + second.sent == 30
    assert len(smtp_server.recipients()) == len(set(smtp_server.recipients())) == 30


def test_second_sender_on_sqlite_is_refused_with_who_holds_the_lock(setup: tuple[Settings, Engine]) -> None:
    settings, engine = setup
    edition_id, _ = frozen_edition(engine, settings, 3)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = f"{socket.gethostname()}:{other.pid}:cli"
        with transaction(engine) as session:
            session.add(Lock(name=SENDER_LOCK, holder=holder, acquired_at=utcnow(), heartbeat_at=utcnow()))
        refused = rf"a send is in progress: pid {other.pid} on {re.escape(socket.gethostname())} \({holder}\), since "
        with pytest.raises(Conflict, match=refused):
            run_send(engine, settings, edition_id, worker="second")
    finally:
        other.kill()
        other.wait()
    # Once that process is gone its lock is taken over at once.
    report = run_send(engine, settings, edition_id, worker="second")
    assert report.sent == 3
    with reading(engine) as session:
        assert session.scalars(select(Lock)).all() == []


def test_only_rows_handed_over_before_a_crash_are_uncertain(
    setup: tuple[Settings, Engine], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine = setup
    edition_id, emails = frozen_edition(engine, settings, 8)
    # A sender died with three rows claimed: two of them were being handed to the server.
    with transaction(engine) as session:
        rows = session.scalars(select(Delivery).where(Delivery.edition_id == edition_id).order_by(Delivery.id).limit(3))
        for number, delivery in enumerate(rows):
            delivery.state = DeliveryState.SENDING
            delivery.claimed_by = "deadhost:1:cli"
            delivery.handed_at = utcnow() if number < 2 else None

    report = run_send(engine, settings, edition_id, worker="w")

    assert report.uncertain == 2 and report.sent == 8
    assert sorted(report.uncertain_addresses) == sorted(emails[:2])
    rows = ledger(engine, edition_id)
    # The claimed row that never reached the server is sent without a word.
    assert [rows[e].uncertain for e in emails] == [1, 1, 0, 0, 0, 0, 0, 0]
    assert rows[emails[2]].last_reply == "250 2.0.0 queued"
    with reading(engine) as session:
        status = delivery_status(session, edition_id)
    assert status["uncertain_total"] == 2
    assert {row["email"] for row in status["uncertain"]} == set(emails[:2])


def test_permanent_failures_in_enough_editions_make_a_subscriber_bounced(
    setup: tuple[Settings, Engine], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine = setup  # bounce_after = 2
    emails = add_subscribers(engine, 4)
    smtp_server.faults.rcpt_replies[emails[1]] = "550 5.1.1 no such mailbox"
    smtp_server.faults.data_replies_for[emails[2]] = ["554 5.7.1 content refused"]
    for edition_number in range(2):
        edition_id = make_edition(engine, settings)
        freeze(engine, settings, edition_id)
        report = run_send(engine, settings, edition_id, worker="w")
        assert report.failed == (2 if edition_number == 0 else 1)
        assert report.bounced == edition_number
    with reading(engine) as session:
        people = {s.email: s for s in session.scalars(select(Subscriber))}
        events = session.scalars(
            select(SubscriberEvent).where(SubscriberEvent.subscriber_id == people[emails[1]].id)
        ).all()
    assert people[emails[1]].status is SubscriberStatus.BOUNCED
    assert people[emails[1]].hard_bounces == 2
    # A content refusal is not the address's fault.
    assert people[emails[2]].status is SubscriberStatus.ACTIVE and people[emails[2]].hard_bounces == 0
    bounce = events[-1]
    assert (bounce.old_status, bounce.new_status) == ("active", "bounced")
    assert "550 5.1.1 no such mailbox" in (bounce.detail or "")
    # The next edition leaves the bounced address out.
    third = make_edition(engine, settings)
    assert freeze(engine, settings, third) == 3


def test_unreachable_server_stops_the_send_and_leaves_rows_untouched(
    tmp_path: Path,
) -> None:
    from bulletin.errors import BulletinError

    from .smtp_server import free_port

    settings, engine, edition_id, _ = sending_world(tmp_path, None, 5, smtp={"port": free_port()})
    freeze(engine, settings, edition_id)
    with pytest.raises(BulletinError, match=r"SMTP server unreachable: cannot connect to 127\.0\.0\.1"):
        run_send(engine, settings, edition_id, worker="w")
    rows = ledger(engine, edition_id)
    assert {row.state for row in rows.values()} == {DeliveryState.PENDING}
    assert {row.attempts for row in rows.values()} == {0}


def test_pause_during_a_send_shorter_than_one_batch_stops_within_one_message_per_connection(
    setup: tuple[Settings, Engine], smtp_server: RecordingSMTPServer
) -> None:
    settings, engine = setup
    settings = dataclasses.replace(settings, delivery=dataclasses.replace(settings.delivery, batch_size=500))
    connections = settings.smtp.connections
    edition_id, _ = frozen_edition(engine, settings, 60)
    paused_at: list[int] = []

    def pause_at_the_fifth(accepted: int) -> None:
        # `edition pause`, committed while the server holds the 250 of the fifth message.
        if accepted == 5 and not paused_at:
            with transaction(engine) as session:
                workflow.pause(session, edition_id, "ana", "a typo in the subject")
            paused_at.append(accepted)

    smtp_server.faults.on_message = pause_at_the_fifth
    report = run_send(engine, settings, edition_id, worker="w")

    assert paused_at == [5]
    assert report.halted
    received = smtp_server.recipients()
    # Each connection may finish the message in hand and at most one more.
    assert 5 <= len(received) <= 5 + 2 * connections - 1, len(received)
    with reading(engine) as session:
        counts = delivery_counts(session, edition_id)
    assert counts["sent"] == report.sent == len(received)
    assert counts["sending"] == 0 and counts["pending"] == 60 - len(received)
    # Stopped cleanly: nothing is uncertain.
    assert not any(row.uncertain for row in ledger(engine, edition_id).values())


@pytest.mark.parametrize("smtputf8", [True, False])
def test_international_addresses_go_out_or_fail_alone(tmp_path: Path, smtputf8: bool) -> None:
    # An IDN domain needs nothing of the server; a non-ASCII local part needs SMTPUTF8, and a
    # server without it fails that one delivery, not the send.
    server = RecordingSMTPServer(enable_SMTPUTF8=smtputf8)
    server.start()
    try:
        settings = make_settings(tmp_path, server)
        engine = migrated_engine(settings)
        emails = add_subscribers(engine, 4)
        emails += add_subscribers(engine, 1, start=4, domain="exämple.net")
        with transaction(engine) as session:
            session.add(subscriber_row("anä@example.net", "fr", "", name="Ana Pérez", confirmed=True, at=utcnow()))
        edition_id = make_edition(engine, settings)
        freeze(engine, settings, edition_id)

        report = run_send(engine, settings, edition_id, worker="w")

        delivered = server.recipients()
        assert "user4@xn--exmple-cua.net" in delivered
        assert sorted(set(delivered) - {"user4@xn--exmple-cua.net"} - {"anä@example.net"}) == sorted(emails[:4])
        rows = ledger(engine, edition_id)
        if smtputf8:
            assert report.sent == 6 and "anä@example.net" in delivered
            copy = next(m for m in server.messages if m.recipients == ["anä@example.net"])
            assert "anä@example.net".encode() in copy.data
        else:
            assert report.sent == 5 and report.failed == 1
            assert rows["anä@example.net"].state == DeliveryState.FAILED
            assert "SMTPUTF8" in (rows["anä@example.net"].last_reply or "")
    finally:
        server.stop()


def test_each_reader_gets_their_variant_when_few_are_kept_built_and_a_retry_comes_late(
    setup: tuple[Settings, Engine], smtp_server: RecordingSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nine variants, one kept built at a time: the send goes variant by variant, and the
    # greylisted reader's retry, after every other variant, builds theirs again.
    from bulletin.mta import connections

    from .send_fixtures import FakeClock

    monkeypatch.setattr(connections, "TEMPLATES_KEPT", 1)
    settings, engine = setup
    emails = add_subscribers(engine, 45)
    edition_id = make_edition(engine, settings)
    freeze(engine, settings, edition_id)
    late = emails[0]
    smtp_server.faults.rcpt_replies_once[late] = ["451 4.7.1 greylisted: please retry"]

    report = run_send(engine, settings, edition_id, worker="w", wait_for_retries=True, clock=FakeClock())

    assert report.sent == 45 and report.deferred == 1
    received = smtp_server.wait_for(45)
    assert received[-1].recipients == [late]
    with reading(engine) as session:
        people = {s.email: s for s in session.scalars(select(Subscriber))}
    for message in received:
        person = people[message.recipients[0]]
        subject = message.parse()["Subject"]
        assert subject.startswith(f"[{person.language}] Bulletin {edition_id} — {person.interests or 'all topics'} ·")
