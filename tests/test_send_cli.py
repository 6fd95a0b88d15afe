"""``bulletin edition send`` (test, dry run, real), ``edition status`` and ``worker`` through the CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from bulletin.cli import cli
from bulletin.db import reading, transaction
from bulletin.models import Delivery, Edition, EditionStatus, Lock, Subscriber, SubscriberStatus, utcnow

from .factories import write_config
from .send_fixtures import fast_settings, sending_world
from .smtp_server import RecordingSMTPServer


@pytest.fixture
def world(tmp_path: Path, smtp_server: RecordingSMTPServer) -> tuple[Path, Engine, int, list[str]]:
    config = write_config(tmp_path / "bulletin.toml", fast_settings(tmp_path, smtp_server))
    _, engine, edition_id, emails = sending_world(tmp_path, smtp_server, 9, empty=(("es", "youth"),))
    return config, engine, edition_id, emails


def run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_test_send_reaches_reviewers_without_touching_the_ledger(
    world: tuple[Path, Engine, int, list[str]], smtp_server: RecordingSMTPServer
) -> None:
    config, engine, edition_id, _ = world
    code, out, err = run(
        config,
        *("edition", "send", str(edition_id), "--test-to", "marie@example.org", "--test-to", "paul@example.org"),
        *("--lang", "en", "--interests", "youth,cities"),
    )
    assert code == 0, err
    assert "sent to marie@example.org" in out and "sent to paul@example.org" in out
    messages = smtp_server.wait_for(2)
    assert sorted(m.recipients[0] for m in messages) == ["marie@example.org", "paul@example.org"]
    parsed = messages[0].parse()
    assert parsed["Subject"].startswith(f"[TEST] [en] Bulletin {edition_id} — cities,youth")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = parsed.get_body(("plain",)).get_content()
    assert "__BULLETIN_" not in body
    with reading(engine) as session:
        assert session.scalars(select(Delivery)).all() == []
        edition = session.get(Edition, edition_id)
        assert edition is not None and edition.status is EditionStatus.SENDING


def test_test_send_of_an_unknown_variant_is_one_clear_line(world: tuple[Path, Engine, int, list[str]]) -> None:
    config, _, edition_id, _ = world
    code, _, err = run(config, "edition", "send", str(edition_id), "--test-to", "a@example.org", "--lang", "de")
    assert code == 1
    assert err.startswith(f"Error: edition {edition_id} has no variant de|(all topics) (it has: en|(all topics),")
    assert "Traceback" not in err
    code, _, err = run(config, "edition", "send", str(edition_id), "--lang", "fr")
    assert code == 2 and "use them with --test-to" in err


def test_dry_run_prints_recipients_per_variant_and_sends_nothing(
    world: tuple[Path, Engine, int, list[str]], smtp_server: RecordingSMTPServer
) -> None:
    config, engine, edition_id, emails = world
    code, out, err = run(config, "edition", "send", str(edition_id), "--dry-run", "--addresses")
    assert code == 0, err
    assert "  fr | all topics: 1 recipient(s) — 8 item(s), subject:" in out
    assert "  es | youth: 1 recipient(s) — skipped: no news for these topics" in out
    assert f"8 subscriber(s) would receive edition {edition_id}." in out
    assert all(f"      {email}" in out for email in emails)
    assert smtp_server.messages == []
    with reading(engine) as session:
        assert session.scalars(select(Delivery)).all() == []


def test_send_then_status(world: tuple[Path, Engine, int, list[str]], smtp_server: RecordingSMTPServer) -> None:
    config, _, edition_id, emails = world
    smtp_server.faults.rcpt_replies[emails[0]] = "550 5.1.1 no such user"
    code, out, err = run(config, "edition", "send", str(edition_id))
    assert code == 0, err
    assert f"Edition {edition_id}: recipient list frozen (9 deliveries)." in out
    assert f"Edition {edition_id} is sent: 7 sent, 0 deferred, 1 failed, 1 skipped of 9 deliveries;" in out
    assert "this run handed 8 to the server in" in out
    assert f"last error: {emails[0]}: 550 5.1.1 no such user" in out
    assert len(smtp_server.recipients()) == 7

    code, out, _ = run(config, "edition", "status", str(edition_id))
    assert code == 0
    assert f"Edition {edition_id} is sent: 9 deliveries" in out
    assert "  sent      7" in out and "  failed    1" in out and "  skipped   1" in out
    assert f"{emails[0]} [failed, 1 attempt(s)]: 550 5.1.1 no such user" in out

    code, out, _ = run(config, "edition", "status", str(edition_id), "--json")
    status = json.loads(out)
    assert status["counts"] == {"pending": 0, "sending": 0, "sent": 7, "deferred": 0, "failed": 1, "skipped": 1}
    assert status["uncertain_total"] == 0
    assert status["last_errors"][0]["email"] == emails[0]

    # Sending again finds nothing left to send.
    code, out, err = run(config, "edition", "send", str(edition_id))
    assert code == 1 and "is sent: it cannot start sending" in err
    assert len(smtp_server.recipients()) == 7


def test_second_send_on_sqlite_is_refused_while_one_runs(world: tuple[Path, Engine, int, list[str]]) -> None:
    config, engine, edition_id, _ = world
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with transaction(engine) as session:
            holder = f"{socket.gethostname()}:{other.pid}:cli"
            session.add(Lock(name="sender", holder=holder, acquired_at=utcnow(), heartbeat_at=utcnow()))
        code, _, err = run(config, "edition", "send", str(edition_id))
        assert code == 1
        assert err.startswith(
            f"Error: a send is in progress: pid {other.pid} on {socket.gethostname()} ({holder}), since"
        )
        with reading(engine) as session:
            assert session.scalars(select(Delivery)).all() == []
    finally:
        other.kill()
        other.wait()


def test_worker_sends_what_is_due_and_finishes_the_edition(
    world: tuple[Path, Engine, int, list[str]], smtp_server: RecordingSMTPServer
) -> None:
    from bulletin.config import load_settings
    from bulletin.mta.sender import freeze_recipients

    config, engine, edition_id, emails = world
    settings = load_settings(config)
    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        freeze_recipients(session, settings, edition)
        # Someone unsubscribes after the list was frozen.
        person = session.scalars(select(Subscriber).where(Subscriber.email == emails[1])).one()
        person.status = SubscriberStatus.UNSUBSCRIBED
    code, out, err = run(config, "worker", "--once", "--poll", "0.05")
    assert code == 0, err
    assert f"edition {edition_id}: 7 sent, 0 deferred, 0 failed, 1 skipped (sent)" in out
    assert sorted(smtp_server.recipients()) == sorted(set(emails) - {emails[1], emails[7]})
