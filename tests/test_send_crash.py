"""Kill -9 real senders at random moments, resume, and hold the ledger to what the server really got.

The bounds, per SIGKILL, for C connections: at most 2 x C duplicates, at most 4 x C deliveries
reported uncertain, every duplicate among those reported, nobody lost.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from bulletin.db import reading
from bulletin.models import Delivery, DeliveryState, Edition, EditionStatus, Subscriber

from .factories import write_config
from .send_fixtures import fast_settings, freeze, sending_world
from .smtp_server import RecordingSMTPServer

# Real processes and whole runs: seconds each. `make test PYTEST_ARGS='-m "not slow"'` skips them.
pytestmark = pytest.mark.slow

SUBSCRIBERS = 400
CONNECTIONS = 2


def bulletin(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bulletin", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def rows_by_email(engine: Engine, edition_id: int) -> dict[str, tuple[DeliveryState, bool, int]]:
    """Each recipient's (state, handed over, times uncertain)."""
    with reading(engine) as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.state, Delivery.handed_at, Delivery.uncertain)
            .join(Subscriber)
            .where(Delivery.edition_id == edition_id)
        ).all()
    return {email: (state, handed is not None, times) for email, state, handed, times in rows}


def wait_for_messages(server: RecordingSMTPServer, count: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while len(server.messages) < count and process.poll() is None:
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.002)


@pytest.mark.slow
def test_each_sigkill_costs_at_most_two_duplicates_per_connection_all_reported(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    subscribers = 1200
    # 400 messages a second, so that each kill lands mid-send (a full send takes about 3 s).
    data = fast_settings(
        tmp_path,
        smtp_server,
        smtp={"messages_per_second": 400.0, "connections": CONNECTIONS},
        delivery={"batch_size": 100},
    )
    config = write_config(tmp_path / "bulletin.toml", data)
    _settings, engine, edition_id, emails = sending_world(tmp_path, smtp_server, subscribers)

    rng = random.Random(14)
    # The first kill lands while the process starts or freezes the list, the others mid-send,
    # after a random number of messages reached the server.
    plan = [("seconds", rng.uniform(0.3, 0.9))] + [("messages", rng.randint(20, 200)) for _ in range(5)]
    handed_at_kills: list[set[str]] = []
    delivered_at_kills: list[set[str]] = []
    copies_when_sent: dict[str, int] = {}
    for kind, amount in plan:
        process = bulletin(config, "edition", "send", str(edition_id), "--json")
        if kind == "seconds":
            time.sleep(amount)
        else:
            wait_for_messages(smtp_server, len(smtp_server.messages) + amount, process)
        assert process.poll() is None, "the send finished before every kill landed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
        smtp_server.wait_until_idle()
        rows = rows_by_email(engine, edition_id)
        received = Counter(smtp_server.recipients())
        handed = {e for e, (state, was_handed, _) in rows.items() if state is DeliveryState.SENDING and was_handed}
        handed_at_kills.append(handed)
        # Handed over and already delivered: each of these is sent again, a duplicate.
        delivered_at_kills.append({e for e in handed if received[e]})
        sent_now = {e for e, (state, _, _) in rows.items() if state is DeliveryState.SENT}
        # A row marked sent was really accepted by the server (never a ledger ahead of the mail).
        assert all(received[e] >= 1 for e in sent_now)
        for email in sent_now:
            copies_when_sent.setdefault(email, received[email])
        # Nothing the server took is unaccounted for: every address it got is sent, or handed over.
        assert {e for e in received if received[e]} <= sent_now | handed
        assert len(handed) <= 4 * CONNECTIONS, handed
        assert len(delivered_at_kills[-1]) <= 2 * CONNECTIONS, delivered_at_kills[-1]

    process = bulletin(config, "edition", "send", str(edition_id), "--json")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    report = json.loads(out)
    assert report["status"] == "sent"

    received = Counter(smtp_server.recipients())
    # Nobody lost.
    assert set(received) == set(emails)
    duplicates = {email for email, count in received.items() if count > 1}
    # Every duplicate comes from a kill, within its bound, and is among the deliveries reported.
    assert duplicates == set().union(*delivered_at_kills)
    rows = rows_by_email(engine, edition_id)
    uncertain = {email for email, (_, _, times) in rows.items() if times > 0}
    assert uncertain == set().union(*handed_at_kills)
    assert duplicates <= uncertain
    # Nobody found `sent` at a kill was sent again afterwards.
    assert all(received[email] == count for email, count in copies_when_sent.items())
    assert {state for state, _, _ in rows.values()} == {DeliveryState.SENT}
    with reading(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None and edition.status is EditionStatus.SENT
    status = subprocess.run(
        [*BULLETIN, "--config", str(config), "edition", "status", str(edition_id), "--json", "--limit", "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = json.loads(status.stdout)
    assert shown["counts"]["sent"] == subscribers
    assert shown["uncertain_total"] == len(uncertain)
    assert {row["email"] for row in shown["uncertain"]} == uncertain
    # Whatever arrived parses cleanly.
    for message in smtp_server.messages[:: max(len(smtp_server.messages) // 20, 1)]:
        parsed = message.parse()
        assert [d for part in parsed.walk() for d in part.defects] == []


BULLETIN = (sys.executable, "-m", "bulletin")


@pytest.mark.slow
@pytest.mark.postgres
def test_three_workers_one_killed_lose_nothing_and_report_only_what_was_in_flight(
    tmp_path: Path, smtp_server: RecordingSMTPServer, postgres_url: str
) -> None:
    subscribers = 900
    # 300 a second shared by the three workers: the send takes about three seconds.
    data = fast_settings(
        tmp_path,
        smtp_server,
        database_url=postgres_url,
        smtp={"messages_per_second": 300.0, "connections": CONNECTIONS},
        delivery={"batch_size": 25},
    )
    config = write_config(tmp_path / "bulletin.toml", data)
    settings, engine, edition_id, emails = sending_world(tmp_path, smtp_server, subscribers, database_url=postgres_url)
    freeze(engine, settings, edition_id)

    workers = [bulletin(config, "worker", "--once", "--poll", "0.1", "--name", f"w{n}") for n in range(3)]
    wait_for_messages(smtp_server, random.Random(3).randint(150, 450), workers[0])
    assert workers[0].poll() is None, "the worker finished before the kill"
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    for worker in workers[1:]:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    for worker in workers:
        for stream in (worker.stdout, worker.stderr):
            if stream is not None and not stream.closed:
                stream.close()
    smtp_server.wait_until_idle()

    received = Counter(smtp_server.recipients())
    assert set(received) == set(emails)
    rows = rows_by_email(engine, edition_id)
    assert {state for state, _, _ in rows.values()} == {DeliveryState.SENT}
    uncertain = {email for email, (_, _, times) in rows.items() if times > 0}
    duplicates = {email for email, count in received.items() if count > 1}
    assert duplicates <= uncertain
    assert len(duplicates) <= 2 * CONNECTIONS, duplicates
    assert len(uncertain) <= 4 * CONNECTIONS, uncertain
    with reading(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None and edition.status is EditionStatus.SENT
    engine.dispose()
