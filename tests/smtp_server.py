"""A real SMTP server for tests (aiosmtpd) that records messages and can misbehave on request."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
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

    ``rcpt_replies`` maps an address to the reply given at RCPT (e.g. "550 5.1.1 no such user").
    ``data_replies`` is a list of replies given, in turn, at the end of DATA instead of 250.
    ``drop_on_data`` closes the connection when that many more DATA commands arrive (mid-DATA drop).
    ``stall_seconds`` makes the server sleep before answering DATA.
    """

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_on_data: int = 0
    stall_seconds: float = 0.0


class _Handler:
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.server.faults.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        faults = self.server.faults
        if faults.stall_seconds:
            await asyncio.sleep(faults.stall_seconds)
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
        return "250 2.0.0 queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RecordingSMTPServer:
    """Runs aiosmtpd in a thread on 127.0.0.1; ``messages`` holds what it accepted."""

    def __init__(self, port: int | None = None, **controller_options: Any) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.messages: list[ReceivedMessage] = []
        self.faults = Faults()
        self.lock = threading.Lock()
        self.data_commands = 0
        self._controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            decode_data=False,
            enable_SMTPUTF8=True,
            **controller_options,
        )

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def recipients(self) -> list[str]:
        """Every recipient of every accepted message, in order (duplicates kept)."""
        with self.lock:
            return [rcpt for message in self.messages for rcpt in message.recipients]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} messages, got {len(self.messages)}")
