"""A real SMTP server for tests (aiosmtpd) that records messages and can misbehave on request."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class ReceivedMessage:
    mail_from: str
    recipients: list[str]
    data: bytes
    received_at: float

    def parse(self) -> EmailMessage:
        message = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class Faults:
    """What the server should do wrong; tests set these between sends.

    ``rcpt_replies`` maps an address to the reply given at RCPT every time (e.g. "550 5.1.1 no such user").
    ``rcpt_replies_once`` maps an address to replies given at its next RCPTs, in turn; then it is accepted.
    ``data_replies`` is a list of replies given, in turn, at the end of DATA instead of 250.
    ``data_replies_for`` maps an address to replies given, in turn, at the end of its next DATAs.
    ``drop_on_data`` closes the connection, with no reply, when that many more DATA commands have
    been received in full (the message may or may not count as delivered: the client cannot know).
    ``drop_mid_data`` cuts the connection in the middle of the next N message bodies (nothing is kept).
    ``stall_seconds`` makes the server sleep before answering DATA (the next ``stall_count`` DATA
    commands, or every one while ``stall_count`` is 0).
    ``on_message`` runs after a message is stored and before the client gets its 250.
    """

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    rcpt_replies_once: dict[str, list[str]] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    data_replies_for: dict[str, list[str]] = field(default_factory=dict)
    drop_on_data: int = 0
    drop_mid_data: int = 0
    stall_seconds: float = 0.0
    stall_count: int = 0
    # Called with the number of messages accepted so far, after storing one and before its 250.
    on_message: Callable[[int], None] | None = None


class _Handler:
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.server.pipelining:
            # aiosmtpd reads pipelined commands in order anyway; say so, as most servers do.
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        faults = self.server.faults
        key = address.lower()
        with self.server.lock:
            reply = faults.rcpt_replies.get(key)
            queued = faults.rcpt_replies_once.get(key)
            if not reply and queued:
                reply = queued.pop(0)
            if reply:
                self.server.refusals.append((address, reply))
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        faults = self.server.faults
        stall = 0.0
        with self.server.lock:
            if faults.stall_seconds:
                if faults.stall_count == 0:
                    stall = faults.stall_seconds
                elif faults.stall_count > 0:
                    faults.stall_count -= 1
                    stall = faults.stall_seconds
                    if faults.stall_count == 0:
                        faults.stall_seconds = 0.0
        if stall:
            await asyncio.sleep(stall)
        with self.server.lock:
            self.server.data_commands += 1
            if faults.drop_on_data:
                faults.drop_on_data -= 1
                if faults.drop_on_data == 0:
                    transport = smtp.transport
                    if transport is not None:
                        transport.abort()
                    return "421 connection dropped"
            if faults.data_replies:
                return faults.data_replies.pop(0)
            for rcpt in envelope.rcpt_tos:
                queued = faults.data_replies_for.get(rcpt.lower())
                if queued:
                    reply = queued.pop(0)
                    self.server.refusals.append((rcpt, reply))
                    return reply
            content = envelope.original_content or envelope.content
            assert isinstance(content, bytes)
            self.server.messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from or "",
                    recipients=list(envelope.rcpt_tos),
                    data=content,
                    received_at=time.monotonic(),
                )
            )
            self.server.lock.notify_all()
            accepted = len(self.server.messages)
        if faults.on_message is not None:
            faults.on_message(accepted)
        return "250 2.0.0 queued"


class _FaultySMTP(SMTP):
    """aiosmtpd's server, able to cut a connection in the middle of a message body."""

    def __init__(self, server: RecordingSMTPServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recording_server = server

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        server = self._recording_server
        with server.lock:
            server.disconnections += 1
            server.open_connections -= 1
            server.lock.notify_all()

    async def smtp_DATA(self, arg: str) -> None:
        server = self._recording_server
        with server.lock:
            cut = server.faults.drop_mid_data > 0 and bool(self.envelope and self.envelope.rcpt_tos)
            if cut:
                server.faults.drop_mid_data -= 1
                server.data_commands += 1
        if not cut:
            await super().smtp_DATA(arg)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        # Read part of the body, then go away as a crashing server would.
        await self._reader.read(512)
        if self.transport is not None:
            self.transport.abort()


class _Controller(Controller):
    def __init__(self, server: RecordingSMTPServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recording_server = server

    def factory(self) -> SMTP:
        with self._recording_server.lock:
            self._recording_server.connections += 1
            self._recording_server.open_connections += 1
        return _FaultySMTP(self._recording_server, self.handler, **self.SMTP_kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RecordingSMTPServer:
    """Runs aiosmtpd in a thread on 127.0.0.1; ``messages`` holds what it accepted.

    ``refusals`` lists (address, reply) of every refusal it gave; ``connections`` counts the
    connections clients opened, ``open_connections`` those still open. It offers PIPELINING unless ``pipelining=False``.
    """

    def __init__(self, port: int | None = None, *, pipelining: bool = True, **controller_options: Any) -> None:
        self.port = port or free_port()
        self.pipelining = pipelining
        self.host = "127.0.0.1"
        self.messages: list[ReceivedMessage] = []
        self.refusals: list[tuple[str, str]] = []
        self.faults = Faults()
        # A condition, so that tests wait for a message or a closed connection instead of sleeping.
        self.lock = threading.Condition()
        self.data_commands = 0
        self.connections = 0
        self.disconnections = 0
        self.open_connections = 0
        options: dict[str, Any] = {"decode_data": False, "enable_SMTPUTF8": True}
        options.update(controller_options)
        self._controller = _Controller(self, _Handler(self), hostname=self.host, port=self.port, **options)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def recipients(self) -> list[str]:
        """Every recipient of every accepted message, in order (duplicates kept)."""
        with self.lock:
            return [rcpt for message in self.messages for rcpt in message.recipients]

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Wait until every client connection is closed (whatever a killed client sent is then stored)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.open_connections <= 0:
                    return
            time.sleep(0.01)
        raise AssertionError(f"{self.open_connections} connection(s) still open")

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived; return them."""
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"expected {count} messages, got {len(self.messages)}")
            return list(self.messages)

    def wait_closed(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` client connections have ended (everything they sent is then recorded)."""
        with self.lock:
            if not self.lock.wait_for(lambda: self.disconnections >= count, timeout):
                raise AssertionError(f"expected {count} closed connections, got {self.disconnections}")
