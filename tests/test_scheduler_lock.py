"""One scheduler per database: the lock, its heartbeat and the takeover of a dead holder."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import transaction
from bulletin.models import Lock, utcnow
from bulletin.mta import locks
from bulletin.mta.locks import SENDER_LOCK
from bulletin.runners.scheduler import (
    LOCK_NAME,
    BulletinScheduler,
    LockHeld,
    acquire_lock,
    current_holder,
    describe_holder,
    make_holder,
    release_lock,
    renew_lock,
)

from .factories import migrated_engine, write_config
from .workflow_fixtures import make_settings, schedule_approved, seed, settings_data


def test_a_second_holder_is_refused_and_told_who_holds_the_lock(any_engine: Engine) -> None:
    first = make_holder()
    second = make_holder()
    assert acquire_lock(any_engine, first) is None
    with pytest.raises(LockHeld) as refused:
        acquire_lock(any_engine, second)
    message = str(refused.value)
    assert message.startswith(f"another scheduler is running on this database: {describe_holder(first)}")
    assert "last heartbeat 0 s ago" in message
    assert renew_lock(any_engine, first)
    assert not renew_lock(any_engine, second)
    release_lock(any_engine, second)
    assert current_holder(any_engine) is not None
    release_lock(any_engine, first)
    assert current_holder(any_engine) is None
    assert acquire_lock(any_engine, second) is None


def test_a_holder_that_stopped_renewing_is_taken_over(any_engine: Engine) -> None:
    first = "elsewhere.example.org:4242:abcd"
    second = make_holder()
    start = utcnow()
    acquire_lock(any_engine, first, now=start)
    with pytest.raises(LockHeld, match=r"pid 4242 on elsewhere\.example\.org"):
        acquire_lock(any_engine, second, stale_after=60, now=start + timedelta(seconds=30))
    assert acquire_lock(any_engine, second, stale_after=60, now=start + timedelta(seconds=61)) == first
    # The old holder notices at its next heartbeat that the lock is no longer its own.
    assert not renew_lock(any_engine, first)
    holder = current_holder(any_engine)
    assert holder is not None and holder.holder == second


def test_the_lock_of_a_dead_process_on_this_machine_is_taken_over_at_once(engine: Engine) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    dead = f"{socket.gethostname()}:{dead_pid}:0000"
    with transaction(engine) as session:
        session.add(Lock(name=LOCK_NAME, holder=dead, acquired_at=utcnow(), heartbeat_at=utcnow()))
    assert acquire_lock(engine, make_holder(), stale_after=3600) == dead


def test_two_schedulers_in_one_process_do_not_both_run(engine: Engine, settings: Settings) -> None:
    first = BulletinScheduler(engine, settings, tick_seconds=60)
    first.start()
    try:
        second = BulletinScheduler(engine, settings, tick_seconds=60)
        with pytest.raises(LockHeld, match="another scheduler is running on this database"):
            second.start()
        assert not second.lock_lost
        holder = current_holder(engine)
        assert holder is not None and holder.holder == first.holder
    finally:
        first.stop(wait=True)
    assert current_holder(engine) is None


def test_a_scheduler_whose_lock_was_taken_over_stops(engine: Engine, settings: Settings) -> None:
    service = BulletinScheduler(engine, settings, tick_seconds=60, heartbeat_seconds=0.2)
    service.start()
    try:
        with transaction(engine) as session:
            lock = session.get(Lock, LOCK_NAME)
            assert lock is not None
            lock.holder = "elsewhere.example.org:1:ffff"
        assert service.wait(5), "the scheduler kept running without its lock"
        assert service.lock_lost
    finally:
        service.stop()
    holder = current_holder(engine)
    assert holder is not None and holder.holder == "elsewhere.example.org:1:ffff"


def test_scheduler_status_names_the_holder_and_the_editions_waiting(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bulletin.toml", settings_data(tmp_path, None))
    settings = make_settings(tmp_path, None)
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    runner = CliRunner()
    idle = runner.invoke(cli, ["--config", str(config), "scheduler", "status"])
    assert idle.exit_code == 0, idle.output
    assert idle.output.splitlines()[0] == "No scheduler is running on this database."

    year = utcnow().year + 1
    schedule_approved(engine, settings, edition_id, f"{year}-12-01 09:00")
    acquire_lock(engine, "elsewhere.example.org:4242:abcd")
    busy = runner.invoke(cli, ["--config", str(config), "scheduler", "status"])
    assert busy.exit_code == 0, busy.output
    lines = busy.output.splitlines()
    assert lines[0].startswith("Scheduler: pid 4242 on elsewhere.example.org, since ")
    assert lines[1] == "Periodic edition: '0 8 * * 1' (America/Toronto)"
    assert lines[2] == f"  edition {edition_id}: scheduled, {year}-12-01 09:00 EST"
    engine.dispose()


@pytest.mark.parametrize("name", [LOCK_NAME, SENDER_LOCK])
def test_one_rule_for_every_lock_a_reused_pid_is_not_the_holder(engine: Engine, name: str) -> None:
    # A live process that started after the lock was taken only reused the holder's pid.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = f"{socket.gethostname()}:{other.pid}:old"
        taken = utcnow() - timedelta(hours=1)
        with transaction(engine) as session:
            session.add(Lock(name=name, holder=holder, acquired_at=taken, heartbeat_at=utcnow()))
        assert locks.acquire(engine, name, make_holder(), refusal="held") == holder
        # The same process, holding a lock it took after it started, is alive: refused with who it is.
        with transaction(engine) as session:
            lock = session.get(Lock, name)
            assert lock is not None
            lock.holder, lock.acquired_at, lock.heartbeat_at = holder, utcnow(), utcnow()
        with pytest.raises(LockHeld, match=rf"^held: pid {other.pid} on "):
            locks.acquire(engine, name, make_holder(), refusal="held")
    finally:
        other.kill()
        other.wait()
    # A zombie or vanished process is not alive either.
    assert locks.acquire(engine, name, make_holder(), refusal="held") == holder


def test_the_sender_and_the_scheduler_share_the_lock_module(engine: Engine) -> None:
    with locks.sending_as(engine, "host:1:cli"), locks.sending_as(engine, "host:1:cli"):
        # Re-entrant within a process, one row.
        current = locks.current_holder(engine, SENDER_LOCK)
        assert current is not None and current.holder == "host:1:cli"
    assert locks.current_holder(engine, SENDER_LOCK) is None
