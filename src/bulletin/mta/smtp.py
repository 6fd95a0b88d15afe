"""SMTP connections: plain, STARTTLS or TLS, with AUTH, reused for many messages.

Every reply is classified the way a mail server would: a 4xx reply, 421, a dropped connection
or a timeout is *temporary* (the message is deferred and retried later); a 5xx reply is
*permanent*. A recipient refused at RCPT fails that message alone and the connection goes on.
Settings the user must fix (a refused login, a TLS certificate that does not verify) raise
:class:`SmtpConfigError`, which stops the send instead of failing every message.

Messages are sent with PIPELINING when the server offers it (MAIL, RCPT and DATA in one
write), and the DATA block is written in one piece, dot-stuffed only when needed.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from contextlib import suppress
from email.message import EmailMessage
from typing import NamedTuple, Protocol

from bulletin.config import Settings
from bulletin.errors import BulletinError
from bulletin.mta import mail


class SmtpConfigError(BulletinError):
    """A problem with the SMTP settings or credentials: sending cannot go on until it is fixed."""


class SmtpFailure(Exception):
    """A message the server did not take; ``temporary`` says whether to retry it later."""

    temporary = True

    def __init__(self, reply: str, *, stage: str, code: int | None = None) -> None:
        super().__init__(reply)
        self.reply = reply
        self.stage = stage
        self.code = code

    @property
    def is_recipient_bounce(self) -> bool:
        """A permanent failure caused by the address itself (counts toward the bounce rule)."""
        if self.temporary:
            return False
        if self.stage == "rcpt":
            return True
        return bool(re.match(r"5\d\d[ -]5\.1\.", self.reply))


class TemporaryFailure(SmtpFailure):
    """4xx, 421, a dropped connection or a timeout: retry later."""


class PermanentFailure(SmtpFailure):
    """5xx: do not retry."""

    temporary = False


class RecipientRefused(PermanentFailure):
    """The server refused the recipient at RCPT with a 5xx reply."""


def _reply_text(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}".strip()


def _failure(code: int, message: bytes | str, stage: str) -> SmtpFailure:
    reply = _reply_text(code, message)
    if 400 <= code < 500:
        return TemporaryFailure(reply, stage=stage, code=code)
    if stage == "rcpt" and code >= 500:
        return RecipientRefused(reply, stage=stage, code=code)
    if code >= 500:
        return PermanentFailure(reply, stage=stage, code=code)
    return TemporaryFailure(f"unexpected reply {reply}", stage=stage, code=code)


class Envelope(NamedTuple):
    """Who a message is from and to, and its size (for SIZE)."""

    mail_from: str
    recipient: str
    size: int


class Transport(Protocol):
    """What the sender needs from a connection; tests may give their own."""

    def send_bytes(
        self,
        mail_from: str,
        recipient: str,
        data: bytes,
        *,
        stuffed: bool = False,
        then: Envelope | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> str: ...

    def close(self) -> None: ...


class SmtpTransport:
    """One SMTP connection, opened on first use and reopened after an error or N messages."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        self._count = 0
        self._pipelining = False
        self._smtputf8 = False
        self._size_limit = 0
        # The envelope already written after the last message's end, its replies not yet read.
        self._announced: Envelope | None = None
        self.connections_opened = 0

    # -- connection ---------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._smtp is not None

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.settings.smtp.ca_file
        return ssl.create_default_context(cafile=str(self.settings.resolve_path(ca_file)) if ca_file else None)

    def open(self) -> None:
        """Connect, say EHLO, start TLS and log in as the settings say."""
        cfg = self.settings.smtp
        helo = cfg.helo_name or socket.gethostname()
        where = f"{cfg.host}:{cfg.port}"
        try:
            if cfg.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, local_hostname=helo, timeout=cfg.timeout, context=self._tls_context()
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, local_hostname=helo, timeout=cfg.timeout)
        except ssl.SSLCertVerificationError as exc:
            raise SmtpConfigError(f"TLS certificate of {where} does not verify: {exc.verify_message}") from None
        except smtplib.SMTPConnectError as exc:
            raise _failure(exc.smtp_code, exc.smtp_error, "connect") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"cannot connect to {where}: {_describe(exc)}", stage="connect") from None
        try:
            self._handshake(smtp, where)
        except BaseException:
            _quietly_close(smtp)
            raise
        self._smtp = smtp
        self._count = 0
        self.connections_opened += 1

    def _handshake(self, smtp: smtplib.SMTP, where: str) -> None:
        cfg = self.settings.smtp
        try:
            code, message = smtp.ehlo()
            if code != 250:
                code, message = smtp.helo()
                if code != 250:
                    raise _failure(code, message, "helo")
            if cfg.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise SmtpConfigError(f"{where} does not offer STARTTLS (smtp.security = 'starttls')")
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if cfg.user:
                if not smtp.has_extn("auth"):
                    raise SmtpConfigError(f"{where} does not offer AUTH but smtp.user is set")
                smtp.login(cfg.user, self.settings.smtp_password)
        except ssl.SSLCertVerificationError as exc:
            raise SmtpConfigError(f"TLS certificate of {where} does not verify: {exc.verify_message}") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise SmtpConfigError(
                f"{where} refused the login of {cfg.user!r}: {_reply_text(exc.smtp_code, exc.smtp_error)}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise _failure(exc.smtp_code, exc.smtp_error, "connect") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"connection to {where} failed: {_describe(exc)}", stage="connect") from None
        self._pipelining = smtp.has_extn("pipelining")
        self._smtputf8 = smtp.has_extn("smtputf8")
        size = smtp.esmtp_features.get("size", "")
        self._size_limit = int(size) if size.isdigit() else 0

    def close(self) -> None:
        """Say QUIT and close; never raises."""
        if self._announced is not None:
            # The server waits for the body of an announced message: leave without one, so
            # that nothing is delivered.
            self._drop()
            return
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with suppress(OSError, smtplib.SMTPException):
                smtp.quit()
            _quietly_close(smtp)

    def _drop(self) -> None:
        self._announced = None
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            _quietly_close(smtp)

    # -- sending --------------------------------------------------------------

    def send(self, message: EmailMessage, signer: mail.DkimSigner | None = None) -> str:
        """Send a complete message to its To addresses; return the server's final reply."""
        recipients = [address.addr_spec for address in message["To"].addresses]
        if len(recipients) != 1:
            raise ValueError("send() takes a message with exactly one To address")
        data = mail.message_bytes(self.settings, message, signer)
        return self.send_bytes(mail.envelope_sender(self.settings), recipients[0], data)

    def send_bytes(
        self,
        mail_from: str,
        recipient: str,
        data: bytes,
        *,
        stuffed: bool = False,
        then: Envelope | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> str:
        """Send one message (CRLF line endings) to one recipient.

        ``stuffed`` says the data is already dot-stuffed (see :meth:`mail.VariantTemplate.personalise_for_smtp`).
        ``then`` names the message this connection sends next: when the server offers PIPELINING,
        its MAIL, RCPT and DATA go out in the same write as this message's end (RFC 2920), which
        saves a round trip per message. The next call must then be for that envelope.
        ``meanwhile`` is called once the data is written, before the server's answer is read
        (the sender personalises its next message then).
        Returns the 2xx reply; raises a :class:`SmtpFailure` saying whether to retry.
        """
        limit = self.settings.smtp.messages_per_connection
        if self._smtp is not None and limit and self._count >= limit and self._announced is None:
            self.close()
        if self._smtp is None:
            self.open()
        smtp = self._smtp
        assert smtp is not None
        envelope = Envelope(mail_from, recipient, len(data))
        announced, self._announced = self._announced, None
        if announced is not None and announced != envelope:
            self._drop()
            raise ValueError(f"this connection announced {announced}, not {envelope}")
        self._count += 1
        stage = "mail"
        try:
            if announced is not None:
                # MAIL, RCPT and DATA went out with the previous message's end.
                replies = [smtp.getreply() for _ in range(3)]
            elif self._pipelining:
                # UTF-8: an SMTPUTF8 envelope may hold a non-ASCII address (smtplib would encode ASCII).
                smtp.send(self._commands(envelope).encode("utf-8"))
                replies = [smtp.getreply() for _ in range(3)]
            else:
                replies = []
                for command in self._commands(envelope).splitlines(keepends=True):
                    smtp.send(command.encode("utf-8"))
                    replies.append(smtp.getreply())
                    if replies[-1][0] >= 400:
                        break
            code, message = replies[0]
            if code >= 400:
                self._after_refusal(replies)
                raise _failure(code, message, "mail")
            stage = "rcpt"
            code, message = replies[1]
            if code >= 400:
                self._after_refusal(replies)
                raise _failure(code, message, "rcpt")
            stage = "data"
            code, message = replies[2]
            if code != 354:
                self._after_refusal(replies)
                raise _failure(code, message, "data")
            if not stuffed:
                data = mail.dot_stuff(data)
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            ending = b".\r\n"
            announcement = self._announcement(then) if then is not None else None
            if announcement is not None:
                ending += announcement
                self._announced = then
            smtp.send(data + ending)
            if meanwhile is not None:
                meanwhile()
            code, message = smtp.getreply()
        except SmtpFailure as failure:
            if failure.code == 421:
                self._drop()
            raise
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise TemporaryFailure(f"{_describe(exc)} during {stage.upper()}", stage=stage) from None
        if code == 421:
            self._drop()
        if not 200 <= code < 300:
            # The transaction is over; RSET only if no next one was announced behind it.
            if code != 421 and self._announced is None:
                self._reset()
            raise _failure(code, message, "data")
        return _reply_text(code, message)

    def _commands(self, envelope: Envelope) -> str:
        options = ""
        # An international domain goes out in A-labels; only a non-ASCII local part needs SMTPUTF8.
        recipient = mail.ascii_address(envelope.recipient)
        if not (envelope.mail_from.isascii() and recipient.isascii()):
            if not self._smtputf8:
                raise PermanentFailure(
                    "550 the server does not accept international addresses (SMTPUTF8)", stage="rcpt"
                )
            options += " SMTPUTF8"
        if self._size_limit:
            options += f" SIZE={envelope.size}"
        return f"MAIL FROM:<{envelope.mail_from}>{options}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"

    def _announcement(self, then: Envelope) -> bytes | None:
        """The next message's MAIL, RCPT and DATA, to go out behind this one's end; None if it cannot."""
        limit = self.settings.smtp.messages_per_connection
        if not self._pipelining or (limit and self._count >= limit):
            return None
        try:
            commands = self._commands(then)
        except PermanentFailure:
            return None
        # Only a plain ASCII envelope is announced: an international one goes out on its own turn.
        return commands.encode("ascii") if commands.isascii() else None

    def _after_refusal(self, replies: list[tuple[int, bytes]]) -> None:
        """Leave the connection ready for the next message after a refused transaction."""
        if any(code == 421 for code, _ in replies):
            self._drop()
            return
        smtp = self._smtp
        if smtp is None:
            return
        if len(replies) == 3 and replies[2][0] == 354:
            # Pipelined DATA was accepted although MAIL or RCPT was not: end it empty.
            try:
                smtp.send(".\r\n")
                smtp.getreply()
            except (OSError, smtplib.SMTPException):
                self._drop()
                return
        self._reset()

    def _reset(self) -> None:
        smtp = self._smtp
        if smtp is None:
            return
        try:
            code, _ = smtp.docmd("RSET")
            if code != 250:
                self._drop()
        except (OSError, smtplib.SMTPException):
            self._drop()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read timeout as a disconnection "...: timed out".
        return "timed out" if str(exc).endswith("timed out") else "connection dropped"
    if isinstance(exc, ConnectionError):
        return "connection dropped" if not isinstance(exc, ConnectionRefusedError) else "connection refused"
    text = str(exc).strip()
    return text or type(exc).__name__


def _quietly_close(smtp: smtplib.SMTP) -> None:
    with suppress(OSError):
        smtp.close()


def open_transport(settings: Settings) -> SmtpTransport:
    """A connected transport; raises :class:`SmtpFailure` or :class:`SmtpConfigError` if it cannot connect."""
    transport = SmtpTransport(settings)
    transport.open()
    return transport


def send_one(settings: Settings, message: EmailMessage) -> None:
    """Send a single message (an opt-in email, a test send) over its own connection.

    Raises :class:`SmtpFailure` (temporary or permanent) or :class:`SmtpConfigError`.
    """
    transport = SmtpTransport(settings)
    try:
        transport.send(message, mail.DkimSigner.from_settings(settings))
    finally:
        transport.close()
