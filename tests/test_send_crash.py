"""Kill -9 a real ``bulletin edition send`` at random points, resume, and check what the server got."""

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
from sqlalchemy import select

from bulletin.db import reading
from bulletin.models import Delivery, DeliveryState, Edition, EditionStatus, Subscriber

from .factories import write_config
from .send_fixtures import fast_settings, sending_world
from .smtp_server import RecordingSMTPServer

# Real processes and whole runs: seconds each. `make test PYTEST_ARGS='-m "not slow"'` skips them.
pytestmark = pytest.mark.slow

SUBSCRIBERS = 400


def bulletin(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bulletin", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigkill_at_random_points_loses_nothing_and_reports_every_uncertain_delivery(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    # 150 messages a second, so that each kill lands mid-send (a full send takes about 3 s).
    data = fast_settings(tmp_path, smtp_server, smtp={"messages_per_second": 150.0}, delivery={"batch_size": 20})
    config = write_config(tmp_path / "bulletin.toml", data)
    _settings, engine, edition_id, emails = sending_world(tmp_path, smtp_server, SUBSCRIBERS)

    rng = random.Random(5)
    sending_at_kills: set[str] = set()
    copies_when_sent: dict[str, int] = {}
    kills = 0
    # The first kill lands while the process starts or freezes the list, the others mid-send,
    # after a random number of messages reached the server.
    plan = [("seconds", rng.uniform(0.2, 0.9))] + [("messages", rng.randint(3, 40)) for _ in range(4)]
    for kind, amount in plan:
        arrived = len(smtp_server.messages)
        process = bulletin(config, "edition", "send", str(edition_id), "--json")
        if kind == "seconds":
            time.sleep(amount)
        else:
            deadline = time.monotonic() + 60
            while len(smtp_server.messages) < arrived + amount and process.poll() is None:
                assert time.monotonic() < deadline, "the send made no progress"
                time.sleep(0.005)
        if process.poll() is not None:
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        time.sleep(0.2)  # let the server finish what it was given
        with reading(engine) as session:
            states = dict(
                session.execute(
                    select(Subscriber.email, Delivery.state).join(Subscriber).where(Delivery.edition_id == edition_id)
                ).all()
            )
        received = Counter(smtp_server.recipients())
        sending_now = {email for email, state in states.items() if state is DeliveryState.SENDING}
        sent_now = {email for email, state in states.items() if state is DeliveryState.SENT}
        sending_at_kills |= sending_now
        # A row marked sent was really handed over (never a cursor ahead of the mail).
        assert all(received[email] >= 1 for email in sent_now)
        # How many copies each sent subscriber had at this kill: a resume must not add any.
        for email in sent_now:
            copies_when_sent.setdefault(email, received[email])
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    assert kills == len(plan), "the send finished before every kill landed"

    process = bulletin(config, "edition", "send", str(edition_id), "--json")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    report = json.loads(out)

    received = Counter(smtp_server.recipients())
    # Everyone got the bulletin.
    assert set(received) == set(emails)
    # Duplicates only among deliveries caught in `sending` by a kill.
    duplicates = {email for email, count in received.items() if count > 1}
    assert duplicates <= sending_at_kills
    # Nobody found `sent` at a kill was sent again afterwards.
    assert all(received[email] == count for email, count in copies_when_sent.items())
    assert report["status"] == "sent"
    with reading(engine) as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.state, Delivery.uncertain)
            .join(Subscriber)
            .where(Delivery.edition_id == edition_id)
        ).all()
        edition = session.get(Edition, edition_id)
        assert edition is not None and edition.status is EditionStatus.SENT
    assert {state for _, state, _ in rows} == {DeliveryState.SENT}
    uncertain = {email for email, _, times in rows if times > 0}
    # Every delivery left in `sending` by a kill is counted and reported as uncertain.
    assert uncertain == sending_at_kills
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "bulletin",
            "--config",
            str(config),
            "edition",
            "status",
            str(edition_id),
            "--json",
            "--limit",
            "0",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    shown = json.loads(status.stdout)
    assert shown["counts"]["sent"] == SUBSCRIBERS
    assert shown["uncertain_total"] == len(sending_at_kills)
    assert {row["email"] for row in shown["uncertain"]} == sending_at_kills
    # Whatever arrived parses cleanly.
    for message in smtp_server.messages[:: max(len(smtp_server.messages) // 20, 1)]:
        parsed = message.parse()
        assert [d for part in parsed.walk() for d in part.defects] == []
