"""Before a send changes anything it checks the DKIM key and one SMTP login; Ctrl-C says how to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from bulletin.cli import cli
from bulletin.compose.approval import note_checked
from bulletin.db import reading, transaction
from bulletin.models import Delivery, Edition, EditionStatus, utcnow
from bulletin.runners.scheduler import tick

from .factories import migrated_engine, write_config
from .send_fixtures import add_subscribers, fast_settings, make_edition, make_settings
from .smtp_server import RecordingSMTPServer, free_port


def approved_world(
    tmp_path: Path, server: RecordingSMTPServer | None, count: int = 6, **overrides: object
) -> tuple[Path, Engine, int]:
    data = fast_settings(tmp_path, server, **overrides)  # type: ignore[arg-type]
    config = write_config(tmp_path / "bulletin.toml", data)
    settings = make_settings(tmp_path, server, **overrides)  # type: ignore[arg-type]
    engine = migrated_engine(settings)
    add_subscribers(engine, count)
    return config, engine, make_edition(engine, settings, status=EditionStatus.APPROVED)


def state_of(engine: Engine, edition_id: int) -> tuple[EditionStatus, int]:
    with reading(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        rows = session.scalar(select(func.count(Delivery.id)).where(Delivery.edition_id == edition_id))
        return edition.status, int(rows or 0)


def send(config: Path, edition_id: int) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), "edition", "send", str(edition_id)])
    return result.exit_code, result.stdout, result.stderr


def test_an_unreachable_smtp_server_is_one_line_and_the_edition_stays_approved(tmp_path: Path) -> None:
    port = free_port()
    config, engine, edition_id = approved_world(tmp_path, None, smtp={"port": port})

    code, _, err = send(config, edition_id)

    assert code == 1
    assert err.startswith(f"Error: SMTP server 127.0.0.1:{port}: cannot connect to 127.0.0.1:{port}: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # Nothing changed: no frozen list, still approved.
    assert state_of(engine, edition_id) == (EditionStatus.APPROVED, 0)


def test_a_refused_login_is_one_line_and_the_edition_stays_approved(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    # The server offers no AUTH, so a configured user cannot log in.
    config, engine, edition_id = approved_world(tmp_path, smtp_server, smtp={"user": "mailer"})

    code, _, err = send(config, edition_id)

    assert code == 1
    assert err.startswith("Error: SMTP: 127.0.0.1:") and "does not offer AUTH but smtp.user is set" in err
    assert state_of(engine, edition_id) == (EditionStatus.APPROVED, 0)
    assert smtp_server.messages == []


def test_a_garbage_dkim_key_is_one_line_before_anything_changes(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key at all\n-----END PRIVATE KEY-----\n", encoding="utf-8")
    config, engine, edition_id = approved_world(tmp_path, smtp_server, dkim={"key_path": str(key), "selector": "news"})
    connections_before = smtp_server.connections

    code, _, err = send(config, edition_id)

    assert code == 1
    assert err.startswith("Error: DKIM: ") and len(err.strip().splitlines()) == 1
    assert state_of(engine, edition_id) == (EditionStatus.APPROVED, 0)
    # The key is checked first: the server was not even contacted.
    assert smtp_server.connections == connections_before


def test_the_scheduler_leaves_a_due_edition_scheduled_when_the_preflight_fails(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, smtp={"port": free_port()})
    engine = migrated_engine(settings)
    add_subscribers(engine, 4)
    edition_id = make_edition(engine, settings, status=EditionStatus.SCHEDULED)
    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        edition.scheduled_at = utcnow() - timedelta(minutes=1)
        # As schedule() leaves it: checked, untouched since.
        note_checked(session, edition)

    report = tick(engine, settings, worker="scheduler-test")

    assert edition_id not in report.started
    assert "cannot connect to 127.0.0.1" in report.refused[edition_id]
    assert state_of(engine, edition_id) == (EditionStatus.SCHEDULED, 0)


def test_ctrl_c_during_a_send_says_how_many_were_handed_over_and_how_to_resume(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    config, engine, edition_id = approved_world(
        tmp_path, smtp_server, count=300, smtp={"messages_per_second": 100.0}, delivery={"batch_size": 50}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bulletin", "--config", str(config), "edition", "send", str(edition_id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while len(smtp_server.messages) < 40:
        assert process.poll() is None and time.monotonic() < deadline, "the send did not get going"
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    smtp_server.wait_until_idle()
    with reading(engine) as session:
        sent = session.scalar(
            select(func.count(Delivery.id)).where(Delivery.edition_id == edition_id, Delivery.state == "sent")
        )
    assert lines[0] == (
        f"Interrupted: {sent} message(s) of edition {edition_id} were handed to the server in this run "
        f"({sent} accepted); run 'bulletin edition send {edition_id}' again to resume."
    )
    assert sent == len(smtp_server.messages) < 300
    assert state_of(engine, edition_id)[0] is EditionStatus.SENDING

    resumed = subprocess.run(
        [sys.executable, "-m", "bulletin", "--config", str(config), "edition", "send", str(edition_id), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "sent"
    # A clean stop: everyone once, nobody uncertain.
    received = Counter(smtp_server.recipients())
    assert len(received) == 300 and max(received.values()) == 1
    assert json.loads(resumed.stdout)["uncertain"] == 0
