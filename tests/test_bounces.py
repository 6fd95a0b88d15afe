"""Bounces, complaints, mailto unsubscribes and auto-replies: VERP addresses, classification and actions."""

from __future__ import annotations

import json
import mailbox
import os
import signal
import smtplib
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from bulletin.app.bounces import Report, apply_report
from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.models import Delivery, InboundKind, InboundMail, Subscriber, SubscriberEvent, SubscriberStatus, utcnow
from bulletin.mta import mail
from bulletin.mta.bounces import classify
from bulletin.mta.inbox import InboundServer, process_message
from bulletin.mta.sender import run_send

from . import bounce_fixtures as returned
from .factories import write_config
from .send_fixtures import fast_settings, freeze, sending_world
from .smtp_server import ReceivedMessage, RecordingSMTPServer, free_port

SENDER = {"from_address": "news@centre.example.org", "unsubscribe_mailto": "leave@centre.example.org"}
SOFT = {"soft_bounce_limit": 2, "soft_bounce_days": 30}


def make_world(
    tmp_path: Path, smtp_server: RecordingSMTPServer, database_url: str | None = None
) -> tuple[Settings, Engine, Path, list[ReceivedMessage]]:
    """Six subscribers sent an edition through a real SMTP server; the config file and what it received."""
    options = {"sender": SENDER, "delivery": SOFT, "database_url": database_url}
    settings, engine, edition_id, _ = sending_world(tmp_path, smtp_server, 6, **options)
    config = write_config(tmp_path / "bulletin.toml", fast_settings(tmp_path, smtp_server, **options))
    assert freeze(engine, settings, edition_id) == 6
    report = run_send(engine, settings, edition_id, worker="test")
    assert report.sent == 6
    received = sorted(smtp_server.wait_for(6), key=lambda m: m.recipients[0])
    return settings, engine, config, received


@pytest.fixture
def world(tmp_path: Path, smtp_server: RecordingSMTPServer) -> tuple[Settings, Engine, Path, list[ReceivedMessage]]:
    """The world on SQLite."""
    return make_world(tmp_path, smtp_server)


@pytest.fixture
def any_world(
    tmp_path: Path, smtp_server: RecordingSMTPServer, database_url: str
) -> tuple[Settings, Engine, Path, list[ReceivedMessage]]:
    """The world on SQLite, then on PostgreSQL when available."""
    return make_world(tmp_path, smtp_server, database_url)


def status_of(engine: Engine, email: str) -> SubscriberStatus:
    with reading(engine) as session:
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        return subscriber.status


def delivery_of(engine: Engine, email: str) -> Delivery:
    with reading(engine) as session:
        return session.scalars(select(Delivery).join(Subscriber).where(Subscriber.email == email)).one()


def events_of(engine: Engine, email: str) -> list[SubscriberEvent]:
    with reading(engine) as session:
        return list(
            session.scalars(
                select(SubscriberEvent).join(Subscriber).where(Subscriber.email == email).order_by(SubscriberEvent.id)
            )
        )


def run(config: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], input=stdin, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------------------
# VERP


def test_each_message_has_its_own_signed_envelope_sender_and_unsubscribe_mailbox(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],
) -> None:
    settings, engine, _, received = world
    secret = settings.secret_key
    senders = set()
    for message in received:
        local, _, domain = message.mail_from.partition("@")
        assert domain == "centre.example.org" and local.startswith("bounces+")
        token = local.removeprefix("bounces+")
        assert len(local) <= 64 and token == token.lower()
        delivery = delivery_of(engine, message.recipients[0])
        assert mail.read_delivery_token(secret, mail.BOUNCE_PURPOSE, token) == delivery.id
        header = str(message.parse()["List-Unsubscribe"])
        mailto = header.split("<mailto:")[1].split("?")[0]
        unsubscribe_token = mailto.partition("@")[0].removeprefix("leave+")
        assert mail.read_delivery_token(secret, mail.UNSUBSCRIBE_PURPOSE, unsubscribe_token) == delivery.id
        senders.add(message.mail_from)
    assert len(senders) == len(received)


def test_tokens_do_not_verify_when_forged_or_used_for_the_other_purpose() -> None:
    secret = "a-secret-of-enough-length"
    token = mail.delivery_token(secret, mail.BOUNCE_PURPOSE, 12345)
    assert mail.read_delivery_token(secret, mail.BOUNCE_PURPOSE, token.upper()) == 12345
    assert mail.read_delivery_token(secret, mail.UNSUBSCRIBE_PURPOSE, token) is None
    assert mail.read_delivery_token("another-secret-entirely", mail.BOUNCE_PURPOSE, token) is None
    number, _, mac = token.partition("-")
    assert mail.read_delivery_token(secret, mail.BOUNCE_PURPOSE, f"{number}1-{mac}") is None
    assert mail.read_delivery_token(secret, mail.BOUNCE_PURPOSE, "garbage") is None


def test_bounce_address_defaults_to_bounces_at_the_from_domain_and_can_be_set(tmp_path: Path) -> None:
    from bulletin.config import settings_from_dict

    default = settings_from_dict({"sender": {"from_address": "news@centre.example.org"}}, tmp_path)
    assert mail.envelope_sender(default) == "bounces@centre.example.org"
    chosen = settings_from_dict({"delivery": {"bounce_address": "rp@mail.example.org"}}, tmp_path)
    assert mail.envelope_sender(chosen, 7).startswith("rp+7-") and mail.envelope_sender(chosen, 7).endswith(
        "@mail.example.org"
    )


# ---------------------------------------------------------------------------
# Each kind of message, as a file


def test_hard_dsn_bounces_the_subscriber_at_once_with_status_and_diagnostic(
    any_world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path
) -> None:
    _, engine, config, received = any_world
    sent = received[0]
    email = sent.recipients[0]
    path = tmp_path / "hard.eml"
    path.write_bytes(returned.dsn(sent, status="5.1.1", diagnostic=f"550 5.1.1 <{email}>: Recipient address rejected"))

    code, out, err = run(config, "bounces", "process", str(path))

    assert code == 0, err
    assert out.strip().startswith("1 message(s): 1 hard bounce(s)")
    assert "1 subscriber(s) bounced" in out
    assert status_of(engine, email) is SubscriberStatus.BOUNCED
    row = delivery_of(engine, email)
    assert row.report_kind == "hard" and row.report_status == "5.1.1"
    assert row.report_detail is not None and "Recipient address rejected" in row.report_detail
    last = events_of(engine, email)[-1]
    assert last.new_status == "bounced" and last.detail is not None and "5.1.1" in last.detail
    # The others are untouched.
    assert status_of(engine, received[1].recipients[0]) is SubscriberStatus.ACTIVE


def test_soft_dsns_are_counted_and_bounce_at_the_limit(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path
) -> None:
    _, engine, config, received = world
    sent = received[1]
    email = sent.recipients[0]
    first, second = tmp_path / "soft1.eml", tmp_path / "soft2.eml"
    first.write_bytes(returned.dsn(sent, status="4.2.2", diagnostic="452 4.2.2 Mailbox full"))
    second.write_bytes(returned.dsn(sent, status="4.2.2", diagnostic="452 4.2.2 Mailbox full"))

    code, out, _ = run(config, "bounces", "process", str(first))
    assert code == 0 and "1 soft bounce(s)" in out and "0 subscriber(s) bounced" in out
    assert status_of(engine, email) is SubscriberStatus.ACTIVE
    assert events_of(engine, email)[-1].action == "soft-bounce"
    assert delivery_of(engine, email).report_status == "4.2.2"

    code, out, _ = run(config, "bounces", "process", str(second))
    assert code == 0 and "1 subscriber(s) bounced" in out
    assert status_of(engine, email) is SubscriberStatus.BOUNCED
    assert "2 temporary failures in 30 days" in (events_of(engine, email)[-1].detail or "")


def test_soft_bounces_older_than_the_window_do_not_count(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],
) -> None:
    settings, engine, _, received = world
    email = received[2].recipients[0]
    delivery_id = delivery_of(engine, email).id
    now = utcnow()

    def soft(key: str, at: object) -> str:
        with transaction(engine) as session:
            report = Report(InboundKind.SOFT_BOUNCE, key, None, email, "4.4.1", "timeout", delivery_id)
            return apply_report(session, settings, report, now=at).action  # type: ignore[arg-type]

    assert soft("old", now - timedelta(days=31)) == "counted"
    assert soft("new", now) == "counted"
    assert status_of(engine, email) is SubscriberStatus.ACTIVE
    assert soft("newer", now + timedelta(minutes=1)) == "bounced"


def test_non_standard_bounce_is_read_by_flufl_bounce(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],
) -> None:
    settings, engine, _, received = world
    sent = received[3]
    found = classify(settings, returned.exim_bounce(sent))
    assert found.kind is InboundKind.HARD_BOUNCE
    assert found.recipient == sent.recipients[0]
    assert found.status == "5.1.1" and found.diagnostic is not None and "No such user" in found.diagnostic
    result = process_message(engine, settings, returned.exim_bounce(sent), source="test")
    assert result.action == "bounced"
    assert status_of(engine, sent.recipients[0]) is SubscriberStatus.BOUNCED


def test_arf_complaint_unsubscribes_and_is_recorded(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path
) -> None:
    _, engine, config, received = world
    sent = received[4]
    email = sent.recipients[0]
    path = tmp_path / "arf.eml"
    path.write_bytes(returned.arf_complaint(sent))

    code, out, _ = run(config, "bounces", "process", str(path), "--json")

    assert code == 0
    data = json.loads(out)
    assert data["kinds"] == {"complaint": 1} and data["actions"] == {"unsubscribed": 1}
    assert status_of(engine, email) is SubscriberStatus.UNSUBSCRIBED
    assert [e.action for e in events_of(engine, email)][-2:] == ["complaint", "status"]
    assert delivery_of(engine, email).report_kind == "complaint"
    with reading(engine) as session:
        record = session.scalars(select(InboundMail)).one()
        assert record.kind is InboundKind.COMPLAINT and record.diagnostic == "feedback-type: abuse"


@pytest.mark.parametrize("subject", ["unsubscribe", "Se désabonner", "", "Darse de baja, por favor"])
def test_mailto_unsubscribe_works_whatever_the_subject(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]], subject: str
) -> None:
    settings, engine, _, received = world
    sent = received[5]
    result = process_message(engine, settings, returned.mailto_unsubscribe(sent, subject=subject), source="test")
    assert (result.kind, result.action) == ("unsubscribe", "unsubscribed")
    assert status_of(engine, sent.recipients[0]) is SubscriberStatus.UNSUBSCRIBED
    assert "List-Unsubscribe mailto" in (events_of(engine, sent.recipients[0])[-1].detail or "")


def test_mailto_to_a_forged_token_is_left_alone(world: tuple[Settings, Engine, Path, list[ReceivedMessage]]) -> None:
    settings, engine, _, received = world
    sent = received[5]
    data = returned.mailto_unsubscribe(sent).replace(b"leave+", b"leave+1")
    result = process_message(engine, settings, data, source="test")
    assert result.kind == "unrecognised"
    assert status_of(engine, sent.recipients[0]) is SubscriberStatus.ACTIVE


@pytest.mark.parametrize("language", ["fr", "en", "es"])
@pytest.mark.parametrize("rfc3834", [True, False], ids=["auto-submitted", "subject-only"])
def test_vacation_replies_are_ignored_and_never_counted(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]], language: str, rfc3834: bool
) -> None:
    settings, engine, _, received = world
    sent = received[0]
    before = events_of(engine, sent.recipients[0])
    for n in range(3):  # more than soft_bounce_limit
        data = returned.vacation_reply(sent, language, rfc3834=rfc3834)
        result = process_message(engine, settings, data, source=f"vacation{n}")
        assert (result.kind, result.action) == ("auto-reply", "ignored")
    assert status_of(engine, sent.recipients[0]) is SubscriberStatus.ACTIVE
    assert len(events_of(engine, sent.recipients[0])) == len(before)
    assert delivery_of(engine, sent.recipients[0]).report_kind is None


def test_an_ordinary_reply_is_reported_unrecognised_and_left_alone(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path
) -> None:
    _, engine, config, received = world
    path = tmp_path / "reply.eml"
    path.write_bytes(returned.newsletter_reply(received[0]))
    code, out, err = run(config, "bounces", "process", str(path))
    assert code == 0
    assert "1 unrecognised" in out and f"unrecognised, left alone: {path}" in err
    with reading(engine) as session:
        assert session.scalars(select(InboundMail)).all() == []


def test_each_message_acts_once(world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path) -> None:
    _, engine, config, received = world
    sent = received[1]
    path = tmp_path / "soft.eml"
    path.write_bytes(returned.dsn(sent, status="4.2.2", diagnostic="452 4.2.2 Mailbox full"))
    run(config, "bounces", "process", str(path))
    code, out, _ = run(config, "bounces", "process", str(path), str(path))
    assert code == 0 and "2 already processed" in out and "0 soft bounce(s)" in out
    assert status_of(engine, sent.recipients[0]) is SubscriberStatus.ACTIVE
    with reading(engine) as session:
        assert len(session.scalars(select(InboundMail)).all()) == 1


def test_a_maildir_and_standard_input(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path
) -> None:
    _, engine, config, received = world
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(returned.dsn(received[0], status="5.1.1", diagnostic="550 5.1.1 unknown"))
    box.add(returned.vacation_reply(received[1], "fr"))
    box.add(returned.arf_complaint(received[2]))

    code, out, _ = run(config, "bounces", "process", str(tmp_path / "Maildir"))
    assert code == 0
    assert out.startswith("3 message(s): 1 hard bounce(s), 0 soft bounce(s), 1 complaint(s)")
    assert "1 auto-reply(ies) ignored" in out

    code, out, _ = run(config, "bounces", "process", "-", stdin=returned.mailto_unsubscribe(received[3]))
    assert code == 0 and "1 unsubscribe request(s)" in out
    assert status_of(engine, received[3].recipients[0]) is SubscriberStatus.UNSUBSCRIBED


def test_a_missing_source_is_one_line_and_nothing_is_done(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path
) -> None:
    _, engine, config, received = world
    good = tmp_path / "hard.eml"
    good.write_bytes(returned.dsn(received[0], status="5.1.1", diagnostic="550 5.1.1 unknown"))
    folder = tmp_path / "plain-folder"
    folder.mkdir()
    for bad in (str(tmp_path / "nope.eml"), str(folder)):
        code, out, err = run(config, "bounces", "process", str(good), bad)
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and bad in err
    assert status_of(engine, received[0].recipients[0]) is SubscriberStatus.ACTIVE


# ---------------------------------------------------------------------------
# Over LMTP and SMTP


@pytest.mark.parametrize("lmtp", [True, False], ids=["lmtp", "smtp"])
def test_the_receiver_acts_on_each_kind_before_accepting_it(
    any_world: tuple[Settings, Engine, Path, list[ReceivedMessage]], lmtp: bool
) -> None:
    settings, engine, _, received = any_world
    server = InboundServer(engine, settings, port=free_port(), lmtp=lmtp)
    server.start()
    messages = [
        (received[0].mail_from, returned.dsn(received[0], status="5.1.1", diagnostic="550 5.1.1 unknown user")),
        (received[1].mail_from, returned.dsn(received[1], status="4.2.2", diagnostic="452 4.2.2 full")),
        ("abuse@centre.example.org", returned.arf_complaint(received[2])),
        ("", returned.mailto_unsubscribe(received[3])),
        (received[4].mail_from, returned.vacation_reply(received[4], "es")),
    ]
    try:
        client: smtplib.SMTP = (
            smtplib.LMTP("127.0.0.1", server.port) if lmtp else smtplib.SMTP("127.0.0.1", server.port)
        )
        with client:
            for rcpt, data in messages:
                if not rcpt:
                    header = str(received[3].parse()["List-Unsubscribe"])
                    rcpt = header.split("<mailto:")[1].split("?")[0]
                # Strip the headers that name the recipient: the envelope alone must be enough.
                data = b"\r\n".join(
                    line for line in data.split(b"\r\n") if not line.lower().startswith(b"delivered-to:")
                )
                refused = client.sendmail("", [rcpt], data)
                assert refused == {}
    finally:
        server.stop()
    assert server.summary.total == 5
    assert server.summary.kinds == {"hard": 1, "soft": 1, "complaint": 1, "unsubscribe": 1, "auto-reply": 1}
    assert status_of(engine, received[0].recipients[0]) is SubscriberStatus.BOUNCED
    assert status_of(engine, received[1].recipients[0]) is SubscriberStatus.ACTIVE
    assert delivery_of(engine, received[1].recipients[0]).report_status == "4.2.2"
    assert status_of(engine, received[2].recipients[0]) is SubscriberStatus.UNSUBSCRIBED
    assert status_of(engine, received[3].recipients[0]) is SubscriberStatus.UNSUBSCRIBED
    assert status_of(engine, received[4].recipients[0]) is SubscriberStatus.ACTIVE


def test_the_receiver_defers_when_the_database_is_gone(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path
) -> None:
    settings, engine, _, received = world
    from bulletin.db import make_engine

    broken = make_engine(f"sqlite:///{tmp_path / 'missing' / 'nothing.db'}")
    server = InboundServer(broken, settings, port=free_port(), lmtp=False)
    server.start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port) as client:
            data = returned.dsn(received[0], status="5.1.1", diagnostic="550 unknown")
            with pytest.raises(smtplib.SMTPDataError) as caught:
                client.sendmail("", [received[0].mail_from], data)
            assert caught.value.smtp_code == 451
    finally:
        server.stop()
    assert status_of(engine, received[0].recipients[0]) is SubscriberStatus.ACTIVE


# ---------------------------------------------------------------------------
# Reports


def test_reports_show_bounces_per_edition_and_per_subscriber(
    any_world: tuple[Settings, Engine, Path, list[ReceivedMessage]], tmp_path: Path
) -> None:
    _, engine, config, received = any_world
    files = [
        returned.dsn(received[0], status="5.1.1", diagnostic="550 5.1.1 no such user"),
        returned.dsn(received[1], status="4.2.2", diagnostic="452 4.2.2 mailbox full"),
        returned.arf_complaint(received[2]),
        returned.mailto_unsubscribe(received[3]),
    ]
    paths = []
    for n, data in enumerate(files):
        paths.append(tmp_path / f"{n}.eml")
        paths[-1].write_bytes(data)
    assert run(config, "bounces", "process", *map(str, paths))[0] == 0
    edition_id = delivery_of(engine, received[0].recipients[0]).edition_id

    code, out, _ = run(config, "edition", "status", str(edition_id))
    assert code == 0
    assert "Came back: 1 hard bounce(s), 1 soft bounce(s), 1 complaint(s), 1 unsubscribe request(s)" in out
    code, out, _ = run(config, "edition", "status", str(edition_id), "--json")
    assert json.loads(out)["reports"] == {"hard": 1, "soft": 1, "complaint": 1, "unsubscribe": 1}

    code, out, _ = run(config, "subscribers", "show", received[0].recipients[0])
    assert code == 0 and "Bounces and complaints" in out and "5.1.1" in out and "no such user" in out
    code, out, _ = run(config, "subscribers", "show", received[0].recipients[0], "--json")
    assert json.loads(out)["bounces"][0]["status"] == "5.1.1"

    code, out, _ = run(config, "subscribers", "list", "--status", "bounced", "--json")
    assert code == 0
    assert [row["email"] for row in json.loads(out)] == [received[0].recipients[0]]


def test_our_own_message_coming_back_is_ignored(world: tuple[Settings, Engine, Path, list[ReceivedMessage]]) -> None:
    settings, engine, _, received = world
    sent = received[0]
    # A forwarding rule that sends the bulletin back to its envelope sender.
    looped = f"Delivered-To: {sent.mail_from}\r\n".encode() + sent.data
    result = process_message(engine, settings, looped, source="loop")
    assert (result.kind, result.action) == ("auto-reply", "ignored")
    assert "X-Loop" in result.reason
    assert status_of(engine, sent.recipients[0]) is SubscriberStatus.ACTIVE


def test_bounces_serve_runs_until_stopped_and_reports(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],
) -> None:
    _, engine, config, received = world
    port = free_port()
    command = [sys.executable, "-m", "bulletin", "--config", str(config), "bounces", "serve", "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"Receiving LMTP on 127.0.0.1:{port}"
        busy = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert busy.returncode == 1 and busy.stderr.strip().startswith("Error: cannot listen on 127.0.0.1:")
        with smtplib.LMTP("127.0.0.1", port) as client:
            dsn = returned.dsn(received[0], status="5.1.1", diagnostic="550 5.1.1 unknown user")
            assert client.sendmail("", [received[0].mail_from], dsn) == {}
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.strip().startswith("1 message(s): 1 hard bounce(s)")
    assert status_of(engine, received[0].recipients[0]) is SubscriberStatus.BOUNCED
