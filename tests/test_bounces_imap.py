"""``bulletin bounces fetch`` against Debian's dovecot-imapd over TLS (set up by .ci/dovecot.sh)."""

from __future__ import annotations

import imaplib
import os
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from bulletin.cli import cli
from bulletin.config import Settings, load_settings
from bulletin.models import SubscriberStatus
from bulletin.mta import inbox
from bulletin.runners.scheduler import BOUNCE_FETCH_JOB, BulletinScheduler

from . import bounce_fixtures as returned
from .factories import wait_until, write_config
from .send_fixtures import fast_settings
from .smtp_server import ReceivedMessage, RecordingSMTPServer
from .test_bounces import SENDER, SOFT, delivery_of, status_of, world  # noqa: F401 - the world fixture

IMAP_ENV = "BULLETIN_TEST_IMAP"
CA_ENV = "BULLETIN_TEST_IMAP_CA"

pytestmark = pytest.mark.imap


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    user: str
    password: str
    ca_file: str
    folder: str

    @property
    def processed(self) -> str:
        return f"{self.folder}-done"

    def connect(self) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL(
            self.host, self.port, ssl_context=ssl.create_default_context(cafile=self.ca_file), timeout=10
        )
        client.login(self.user, self.password)
        return client

    def append(self, data: bytes) -> None:
        with self.connect() as client:
            assert client.append(f'"{self.folder}"', "", imaplib.Time2Internaldate(time.time()), data)[0] == "OK"

    def count(self, folder: str) -> int:
        with self.connect() as client:
            status, data = client.select(f'"{folder}"', readonly=True)
            return int(data[0]) if status == "OK" else -1

    def seen_flags(self, folder: str) -> list[bool]:
        with self.connect() as client:
            client.select(f'"{folder}"', readonly=True)
            _, data = client.fetch("1:*", "(FLAGS)")
            return [b"\\Seen" in item for item in data if isinstance(item, bytes)]


@pytest.fixture
def imap_account() -> Iterator[ImapAccount]:
    """The dovecot test account, with a fresh folder of its own (deleted afterwards)."""
    url = os.environ.get(IMAP_ENV)
    if not url:
        pytest.skip(f'IMAP tests need dovecot and {IMAP_ENV} (run: eval "$(bash .ci/dovecot.sh)")')
    parts = urlsplit(url)
    assert parts.hostname and parts.username and parts.password
    account = ImapAccount(
        parts.hostname,
        parts.port or 993,
        parts.username,
        parts.password,
        os.environ.get(CA_ENV, ""),
        f"bounces-{uuid.uuid4().hex[:10]}",
    )
    try:
        client = account.connect()
    except OSError as exc:
        pytest.skip(f"no IMAP server at {account.host}:{account.port}: {exc}")
    with client:
        assert client.create(f'"{account.folder}"')[0] == "OK"
    yield account
    with account.connect() as client:
        client.delete(f'"{account.folder}"')
        client.delete(f'"{account.processed}"')


def fetch_config(tmp_path: Path, smtp_server: RecordingSMTPServer, account: ImapAccount, **bounces: object) -> Path:
    data = fast_settings(tmp_path, smtp_server, sender=SENDER, delivery=SOFT)
    data["bounces"] = {
        "imap_host": account.host,
        "imap_port": account.port,
        "user": account.user,
        "folder": account.folder,
        "processed_folder": account.processed,
        "ca_file": account.ca_file,
        **bounces,
    }
    return write_config(tmp_path / "imap.toml", data)


def test_fetch_acts_on_each_kind_and_moves_what_it_processed(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],  # noqa: F811
    imap_account: ImapAccount,
    smtp_server: RecordingSMTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, engine, _, received = world
    config = fetch_config(tmp_path, smtp_server, imap_account)
    for data in (
        returned.dsn(received[0], status="5.1.1", diagnostic="550 5.1.1 no such user"),
        returned.dsn(received[1], status="4.2.2", diagnostic="452 4.2.2 mailbox full"),
        returned.arf_complaint(received[2]),
        returned.mailto_unsubscribe(received[3]),
        returned.vacation_reply(received[4], "fr", rfc3834=False),
        returned.newsletter_reply(received[5]),
    ):
        imap_account.append(data)
    monkeypatch.setenv("BULLETIN_BOUNCE_PASSWORD", imap_account.password)

    result = CliRunner().invoke(cli, ["--config", str(config), "bounces", "fetch"], catch_exceptions=False)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        "6 message(s): 1 hard bounce(s), 1 soft bounce(s), 1 complaint(s), 1 unsubscribe request(s), "
        "1 auto-reply(ies) ignored, 1 unrecognised, 0 already processed; 1 subscriber(s) bounced, 2 unsubscribed."
    )
    assert status_of(engine, received[0].recipients[0]) is SubscriberStatus.BOUNCED
    assert delivery_of(engine, received[1].recipients[0]).report_status == "4.2.2"
    assert status_of(engine, received[1].recipients[0]) is SubscriberStatus.ACTIVE
    assert status_of(engine, received[2].recipients[0]) is SubscriberStatus.UNSUBSCRIBED
    assert status_of(engine, received[3].recipients[0]) is SubscriberStatus.UNSUBSCRIBED
    assert status_of(engine, received[4].recipients[0]) is SubscriberStatus.ACTIVE
    # The five recognised ones moved; the person's reply stays, unread, for someone to read.
    assert imap_account.count(imap_account.processed) == 5
    assert imap_account.count(imap_account.folder) == 1
    assert imap_account.seen_flags(imap_account.folder) == [False]

    again = CliRunner().invoke(cli, ["--config", str(config), "bounces", "fetch", "--json"], catch_exceptions=False)
    assert again.exit_code == 0
    assert '"unrecognised": 1' in again.stdout and imap_account.count(imap_account.processed) == 5


def test_a_wrong_password_or_an_untrusted_certificate_is_one_line(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],  # noqa: F811
    imap_account: ImapAccount,
    smtp_server: RecordingSMTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = fetch_config(tmp_path, smtp_server, imap_account)
    monkeypatch.setenv("BULLETIN_BOUNCE_PASSWORD", "not-the-password")
    result = CliRunner().invoke(cli, ["--config", str(config), "bounces", "fetch"], catch_exceptions=False)
    assert result.exit_code == 1 and result.stderr.startswith("Error: IMAP login as")
    assert len(result.stderr.strip().splitlines()) == 1

    monkeypatch.setenv("BULLETIN_BOUNCE_PASSWORD", imap_account.password)
    untrusted = fetch_config(tmp_path, smtp_server, ImapAccount(**{**imap_account.__dict__, "ca_file": ""}))
    result = CliRunner().invoke(cli, ["--config", str(untrusted), "bounces", "fetch"], catch_exceptions=False)
    assert result.exit_code == 1 and "TLS" in result.stderr and "certificate" in result.stderr.lower()

    monkeypatch.delenv("BULLETIN_BOUNCE_PASSWORD")
    result = CliRunner().invoke(cli, ["--config", str(config), "bounces", "fetch"], catch_exceptions=False)
    assert result.exit_code == 1 and "BULLETIN_BOUNCE_PASSWORD is not set" in result.stderr


def test_the_scheduler_fetches_the_mailbox_every_poll_seconds(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],  # noqa: F811
    imap_account: ImapAccount,
    smtp_server: RecordingSMTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, engine, _, received = world
    settings = load_settings(fetch_config(tmp_path, smtp_server, imap_account, poll_seconds=1))
    monkeypatch.setenv("BULLETIN_BOUNCE_PASSWORD", imap_account.password)
    imap_account.append(returned.dsn(received[0], status="5.1.1", diagnostic="550 5.1.1 no such user"))
    service = BulletinScheduler(engine, settings, tick_seconds=60)
    service.start()
    try:
        job = service._scheduler.get_job(BOUNCE_FETCH_JOB) if service._scheduler else None
        assert job is not None and job.trigger.interval.total_seconds() == 1
        wait_until(lambda: status_of(engine, received[0].recipients[0]) is SubscriberStatus.BOUNCED)
        wait_until(lambda: imap_account.count(imap_account.processed) == 1)
    finally:
        service.stop(wait=True)


def test_the_scheduler_has_no_fetch_job_without_an_imap_host(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],  # noqa: F811
) -> None:
    settings, engine, _, _ = world
    service = BulletinScheduler(engine, settings, tick_seconds=60)
    service.start()
    try:
        assert service._scheduler is not None and service._scheduler.get_job(BOUNCE_FETCH_JOB) is None
    finally:
        service.stop(wait=True)


def test_fetch_moves_with_copy_and_expunge_where_the_server_has_no_move(
    world: tuple[Settings, Engine, Path, list[ReceivedMessage]],  # noqa: F811
    imap_account: ImapAccount,
    smtp_server: RecordingSMTPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, engine, _, received = world
    settings = load_settings(fetch_config(tmp_path, smtp_server, imap_account))
    monkeypatch.setenv("BULLETIN_BOUNCE_PASSWORD", imap_account.password)
    # An IMAP4rev1 server without RFC 6851 MOVE: dovecot, with MOVE left out of what it offers.
    real = inbox._capabilities
    monkeypatch.setattr(inbox, "_capabilities", lambda client: real(client) - {"MOVE"})
    imap_account.append(returned.arf_complaint(received[2]))
    imap_account.append(returned.newsletter_reply(received[5]))
    summary = inbox.fetch_imap(engine, settings)
    assert [r.kind for r in summary.results] == ["complaint", "unrecognised"]
    assert status_of(engine, received[2].recipients[0]) is SubscriberStatus.UNSUBSCRIBED
    assert imap_account.count(imap_account.processed) == 1
    assert imap_account.count(imap_account.folder) == 1
