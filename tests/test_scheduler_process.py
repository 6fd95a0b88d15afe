"""``bulletin scheduler run`` as real processes: killed and restarted after the due time, and a second one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from bulletin.app import workflow
from bulletin.db import transaction
from bulletin.models import Delivery, EditionStatus, utcnow
from bulletin.runners.scheduler import current_holder, describe_holder

from .factories import migrated_engine, wait_until, write_config
from .smtp_server import RecordingSMTPServer
from .workflow_fixtures import history, make_settings, schedule_approved, seed, settings_data

# Real processes and whole runs: seconds each. `make test PYTEST_ARGS='-m "not slow"'` skips them.
pytestmark = pytest.mark.slow


@contextmanager
def scheduler_process(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bulletin", "--config", str(config), "scheduler", "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _status(engine: Engine, edition_id: int) -> EditionStatus:
    with transaction(engine) as session:
        return workflow.get_edition(session, edition_id).status


def test_a_killed_scheduler_restarted_after_the_due_time_sends_the_edition_once(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    # The periodic edition is far away (1 January); the tick runs every second.
    sections = {"schedule": {"timezone": "America/Toronto", "cron": "0 6 1 1 *", "tick_seconds": 1}}
    config = write_config(tmp_path / "bulletin.toml", settings_data(tmp_path, smtp_server, **sections))
    settings = make_settings(tmp_path, smtp_server, **sections)
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    due = utcnow() + timedelta(seconds=6)
    schedule_approved(engine, settings, edition_id, due)

    first_log = tmp_path / "first.log"
    with scheduler_process(config, first_log) as first:
        wait_until(lambda: "scheduler started" in first_log.read_text(), timeout=30.0)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    # The dead scheduler's lock is still there, and nothing was sent.
    holder = current_holder(engine)
    assert holder is not None and f"pid {first.pid} " in describe_holder(holder.holder) + " "
    time.sleep(max((due - utcnow()).total_seconds() + 1, 0))
    assert smtp_server.messages == []
    assert _status(engine, edition_id) is EditionStatus.SCHEDULED

    second_log = tmp_path / "second.log"
    with scheduler_process(config, second_log) as second:
        wait_until(lambda: _status(engine, edition_id) is EditionStatus.SENT, timeout=30.0)
        output = second_log.read_text()
        assert f"took over the scheduler lock from pid {first.pid} on" in output

        # A third scheduler on the same database is refused and says which one runs.
        third = subprocess.run(
            [sys.executable, "-m", "bulletin", "--config", str(config), "scheduler", "run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert third.returncode == 1
        assert (
            third.stderr.strip()
            .splitlines()[-1]
            .startswith(f"Error: another scheduler is running on this database: pid {second.pid} on ")
        )
        assert "Traceback" not in third.stderr
        time.sleep(2.5)  # more ticks: nothing is sent twice
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    assert "scheduler stopped" in second_log.read_text()
    assert current_holder(engine) is None

    assert sorted(smtp_server.recipients()) == sorted(
        ["ana@example.org", "marie@example.org", "paul@example.org", "john@example.org", "lee@example.org"]
    )
    with transaction(engine) as session:
        assert session.scalar(select(func.count(Delivery.id)).where(Delivery.edition_id == edition_id)) == 5
    assert history(engine, edition_id)[-2:] == [("scheduled", "sending", "scheduler"), ("sending", "sent", "scheduler")]
    engine.dispose()


def test_a_scheduler_killed_in_the_middle_of_a_send_finishes_it_after_a_restart(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    sections = {
        "schedule": {"timezone": "America/Toronto", "cron": "0 6 1 1 *", "tick_seconds": 1},
        # One connection and a slow server: the send takes seconds, long enough to be interrupted.
        "smtp": {"connections": 1},
        "delivery": {"batch_size": 2},
    }
    config = write_config(tmp_path / "bulletin.toml", settings_data(tmp_path, smtp_server, **sections))
    settings = make_settings(tmp_path, smtp_server, **sections)
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    schedule_approved(engine, settings, edition_id, utcnow())
    smtp_server.faults.stall_seconds = 0.6

    with scheduler_process(config, tmp_path / "first.log") as first:
        wait_until(lambda: len(smtp_server.messages) >= 1, timeout=30.0)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert _status(engine, edition_id) is EditionStatus.SENDING
    assert len(smtp_server.messages) < 5

    with scheduler_process(config, tmp_path / "second.log") as second:
        wait_until(lambda: _status(engine, edition_id) is EditionStatus.SENT, timeout=30.0)
        second.send_signal(signal.SIGTERM)
        second.wait(20)

    everyone = {"ana@example.org", "marie@example.org", "paul@example.org", "john@example.org", "lee@example.org"}
    received = smtp_server.recipients()
    assert set(received) == everyone
    # Only a message in flight at the moment of the kill may have gone twice (the ledger says which).
    assert len(received) <= len(everyone) + 1
    with transaction(engine) as session:
        uncertain = session.scalar(select(func.sum(Delivery.uncertain)).where(Delivery.edition_id == edition_id))
    # Rows claimed by the dead scheduler are flagged uncertain: every duplicate is among them.
    assert len(received) - len(everyone) <= (uncertain or 0)
    assert [row[:2] for row in history(engine, edition_id)].count(("scheduled", "sending")) == 1
