"""The SMTP transport against a real server: reuse, TLS, AUTH and how each reply is classified."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulletin.config import Settings
from bulletin.mta import mail
from bulletin.mta.smtp import (
    Envelope,
    PermanentFailure,
    RecipientRefused,
    SmtpConfigError,
    SmtpTransport,
    TemporaryFailure,
    send_one,
)

from .factories import smtp_server_both_ways  # noqa: F401  (the smtp_server fixture of this module)
from .send_fixtures import make_settings
from .smtp_server import RecordingSMTPServer


def message(settings: Settings, to: str, body: str = "Bonjour à tous.\n") -> Any:
    return mail.build_message(
        settings,
        to_email=to,
        to_name="Test",
        subject="Essai",
        html=f"<p>{body}</p>",
        text=body,
        message_id=f"<{to}.test@example.org>",
        list_unsubscribe_url="https://bulletin.example.org/unsubscribe/x",
    )


def test_one_connection_carries_many_messages_and_reopens_after_the_limit(
    smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, smtp_server, smtp={"messages_per_connection": 3})
    before = smtp_server.connections
    transport = SmtpTransport(settings)
    for n in range(7):
        reply = transport.send(message(settings, f"r{n}@example.net"))
        assert reply.startswith("250")
    transport.close()
    assert [m.recipients for m in smtp_server.wait_for(7)] == [[f"r{n}@example.net"] for n in range(7)]
    assert smtp_server.connections - before == 3
    assert transport.connections_opened == 3


def test_leading_dots_survive_the_trip(smtp_server: RecordingSMTPServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, smtp_server)
    body = ".starts with a dot\n.\n..two dots\n"
    send_one(settings, message(settings, "dots@example.net", body))
    received = smtp_server.wait_for(1)[0].parse()
    text = received.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text == body


def test_recipient_refused_at_rcpt_fails_alone_and_the_connection_goes_on(
    smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, smtp_server)
    smtp_server.faults.rcpt_replies["gone@example.net"] = "550 5.1.1 <gone@example.net>: mailbox unavailable"
    transport = SmtpTransport(settings)
    transport.send(message(settings, "first@example.net"))
    connections = smtp_server.connections
    with pytest.raises(RecipientRefused) as refused:
        transport.send(message(settings, "gone@example.net"))
    assert refused.value.reply == "550 5.1.1 <gone@example.net>: mailbox unavailable"
    assert refused.value.is_recipient_bounce
    transport.send(message(settings, "next@example.net"))
    transport.close()
    assert smtp_server.connections == connections
    assert smtp_server.recipients() == ["first@example.net", "next@example.net"]


@pytest.mark.parametrize(
    ("where", "reply", "kind"),
    [
        ("rcpt", "451 4.7.1 greylisted, try again later", TemporaryFailure),
        ("rcpt", "421 4.3.2 service shutting down", TemporaryFailure),
        ("data", "451 4.3.0 local error in processing", TemporaryFailure),
        ("data", "421 4.4.2 too busy", TemporaryFailure),
        ("data", "554 5.7.1 message refused as spam", PermanentFailure),
        ("data", "550 5.1.1 user unknown", PermanentFailure),
    ],
)
def test_replies_are_classified(
    smtp_server: RecordingSMTPServer, tmp_path: Path, where: str, reply: str, kind: type[Exception]
) -> None:
    settings = make_settings(tmp_path, smtp_server)
    if where == "rcpt":
        smtp_server.faults.rcpt_replies_once["x@example.net"] = [reply]
    else:
        smtp_server.faults.data_replies_for["x@example.net"] = [reply]
    transport = SmtpTransport(settings)
    with pytest.raises(kind) as failure:
        transport.send(message(settings, "x@example.net"))
    assert type(failure.value) is kind or (kind is PermanentFailure and isinstance(failure.value, PermanentFailure))
    assert failure.value.reply == reply
    assert failure.value.stage == where
    # 421 closes the connection; after any refusal the next message still goes through.
    assert transport.is_open == (not reply.startswith("421"))
    transport.send(message(settings, "x@example.net"))
    transport.close()
    assert smtp_server.recipients() == ["x@example.net"]
    # Only a 5.1.x at DATA (bad mailbox) counts toward the bounce rule, not a content refusal.
    assert failure.value.is_recipient_bounce == reply.startswith("550 5.1.1")


def test_connection_dropped_mid_data_is_temporary(smtp_server: RecordingSMTPServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, smtp_server)
    smtp_server.faults.drop_mid_data = 1
    transport = SmtpTransport(settings)
    with pytest.raises(TemporaryFailure, match="during DATA") as failure:
        transport.send(message(settings, "x@example.net", "long body\n" * 5000))
    assert failure.value.stage == "data"
    assert not transport.is_open
    transport.send(message(settings, "x@example.net"))
    transport.close()
    assert smtp_server.recipients() == ["x@example.net"]


def test_stalled_server_times_out_as_temporary(smtp_server: RecordingSMTPServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, smtp_server, smtp={"timeout": 0.3})
    smtp_server.faults.stall_seconds = 1.0
    smtp_server.faults.stall_count = 1
    transport = SmtpTransport(settings)
    with pytest.raises(TemporaryFailure, match="timed out during DATA"):
        transport.send(message(settings, "slow@example.net"))
    assert not transport.is_open


def test_unreachable_server_is_temporary(tmp_path: Path) -> None:
    from .smtp_server import free_port

    settings = make_settings(tmp_path, None, smtp={"port": free_port()})
    with pytest.raises(TemporaryFailure, match=r"cannot connect to 127\.0\.0\.1:.*connection refused") as failure:
        send_one(settings, message(settings, "x@example.net"))
    assert failure.value.stage == "connect"


# ---------------------------------------------------------------------------
# TLS and AUTH


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[1]), str(certificate[0]))
    return context


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"mailer", b"s3cret!")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def starttls_server(certificate: tuple[Path, Path]) -> Iterator[RecordingSMTPServer]:
    server = RecordingSMTPServer(
        tls_context=_server_context(certificate),
        require_starttls=True,
        authenticator=_authenticator,
        auth_require_tls=True,
        # aiosmtpd's LOGIN does not take smtplib's initial response; PLAIN is what servers use anyway.
        auth_exclude_mechanism=["LOGIN"],
    )
    server.start()
    yield server
    server.stop()


def login_settings(tmp_path: Path, server: RecordingSMTPServer, certificate: tuple[Path, Path]) -> Settings:
    """STARTTLS to the server, trusting the test certificate, logging in as ``mailer``."""
    return make_settings(
        tmp_path, server, smtp={"security": "starttls", "user": "mailer", "ca_file": str(certificate[1])}
    )


def test_starttls_and_auth(
    starttls_server: RecordingSMTPServer,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BULLETIN_SMTP_PASSWORD", "s3cret!")
    settings = login_settings(tmp_path, starttls_server, certificate)
    send_one(settings, message(settings, "secure@example.net"))
    assert starttls_server.wait_for(1)[0].recipients == ["secure@example.net"]


def test_wrong_password_is_a_configuration_error(
    starttls_server: RecordingSMTPServer,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BULLETIN_SMTP_PASSWORD", "wrong")
    settings = login_settings(tmp_path, starttls_server, certificate)
    with pytest.raises(SmtpConfigError, match="refused the login of 'mailer': 535"):
        send_one(settings, message(settings, "secure@example.net"))


def test_untrusted_certificate_is_a_configuration_error(starttls_server: RecordingSMTPServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, starttls_server, smtp={"security": "starttls"})
    with pytest.raises(SmtpConfigError, match=r"TLS certificate of 127\.0\.0\.1:.* does not verify"):
        send_one(settings, message(settings, "secure@example.net"))


def test_tls_on_connect(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    server = RecordingSMTPServer(ssl_context=_server_context(certificate))
    server.start()
    try:
        settings = make_settings(tmp_path, server, smtp={"security": "tls", "ca_file": str(certificate[1])})
        send_one(settings, message(settings, "tls@example.net"))
        assert server.wait_for(1)[0].recipients == ["tls@example.net"]
    finally:
        server.stop()


def _raw(settings: Settings, to: str) -> bytes:
    return mail.message_bytes(settings, message(settings, to))


def test_next_envelope_goes_out_with_the_end_of_a_message(smtp_server: RecordingSMTPServer, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, smtp_server)
    sender = settings.sender.from_address
    smtp_server.faults.data_replies_for["b@example.net"] = ["451 4.3.0 try later"]
    smtp_server.faults.rcpt_replies["c@example.net"] = "550 5.1.1 unknown"
    transport = SmtpTransport(settings)
    datas = {to: _raw(settings, to) for to in ("a@example.net", "b@example.net", "c@example.net", "d@example.net")}

    def envelope(to: str) -> Envelope:
        return Envelope(sender, to, len(datas[to]))

    assert transport.send_bytes(sender, "a@example.net", datas["a@example.net"], then=envelope("b@example.net"))
    # The announced message fails at the end of DATA: the one announced behind it still goes on.
    with pytest.raises(TemporaryFailure):
        transport.send_bytes(sender, "b@example.net", datas["b@example.net"], then=envelope("c@example.net"))
    with pytest.raises(RecipientRefused):
        transport.send_bytes(sender, "c@example.net", datas["c@example.net"], then=envelope("d@example.net"))
    transport.send_bytes(sender, "d@example.net", datas["d@example.net"])
    transport.close()
    assert smtp_server.recipients() == ["a@example.net", "d@example.net"]
    assert transport.connections_opened == 1


def test_announced_message_after_a_421_goes_on_a_new_connection(
    smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, smtp_server)
    sender = settings.sender.from_address
    smtp_server.faults.data_replies_for["a@example.net"] = ["421 4.3.2 shutting down"]
    transport = SmtpTransport(settings)
    first, second = _raw(settings, "a@example.net"), _raw(settings, "b@example.net")
    with pytest.raises(TemporaryFailure):
        transport.send_bytes(sender, "a@example.net", first, then=Envelope(sender, "b@example.net", len(second)))
    transport.send_bytes(sender, "b@example.net", second)
    transport.close()
    assert smtp_server.recipients() == ["b@example.net"]
    assert transport.connections_opened == 2


def test_closing_with_an_announced_message_delivers_nothing_more(
    smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, smtp_server)
    sender = settings.sender.from_address
    transport = SmtpTransport(settings)
    first, second = _raw(settings, "a@example.net"), _raw(settings, "b@example.net")
    transport.send_bytes(sender, "a@example.net", first, then=Envelope(sender, "b@example.net", len(second)))
    transport.close()
    # Once the server has seen the connection end, whatever the client sent is recorded.
    smtp_server.wait_closed(1)
    assert smtp_server.recipients() == ["a@example.net"]
