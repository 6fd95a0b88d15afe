"""A local SMTP server that files every message it accepts in a Maildir (for the demo and trials).

It runs aiosmtpd in a background thread on the loopback interface. Each recipient gets its own
copy, with ``Return-Path`` and ``Delivered-To`` prepended as a mail delivery agent would, so the
Maildir can be opened by any mail reader (``mutt -f DIR``) or counted with ``ls DIR/new``.

Run it alone with ``python -m bulletin.mta.devsmtp MAILDIR --port 1025``.
"""

from __future__ import annotations

import argparse
import logging
import mailbox
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)
MAILDIR_FOLDERS = ("tmp", "new", "cur")


class MaildirError(Exception):
    """The folder given cannot be used as a Maildir; the message says why."""


def open_maildir(path: Path) -> mailbox.Maildir:
    """The Maildir at ``path``, created if missing; an existing empty folder becomes one.

    A folder that holds other files is refused rather than filled with tmp/, new/ and cur/.
    """
    try:
        if path.exists() and not path.is_dir():
            raise MaildirError(f"{path} exists and is not a folder: give a Maildir folder")
        if path.is_dir():
            present = {entry.name for entry in path.iterdir()}
            missing = [name for name in MAILDIR_FOLDERS if name not in present]
            if missing and present - set(MAILDIR_FOLDERS):
                raise MaildirError(
                    f"{path} is not a Maildir (it has no {', '.join(missing)} folder but holds other files): "
                    "give an empty or new folder"
                )
            for name in missing:
                (path / name).mkdir(mode=0o700)
        return mailbox.Maildir(str(path), create=True)
    except OSError as exc:
        raise MaildirError(f"cannot use {path} as a Maildir: {exc.strerror or exc}") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class _MaildirHandler:
    def __init__(self, server: MaildirSMTPServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        sender = envelope.mail_from or ""
        try:
            for recipient in envelope.rcpt_tos:
                prefix = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
                self.server.store(prefix + content)
        except OSError as exc:
            # A full disk or a removed folder: the client is told to try later, the console says why.
            reason = exc.strerror or str(exc)
            self.server.store_failures += 1
            log.error("cannot store a message in %s: %s", self.server.maildir_path, reason)
            print(f"devsmtp: cannot store a message in {self.server.maildir_path}: {reason}", file=sys.stderr)
            return f"451 4.3.0 Cannot store the message in the Maildir: {reason}"
        return "250 2.0.0 Ok: delivered to Maildir"


class MaildirSMTPServer:
    """An SMTP server on ``host:port`` that stores each delivered message in ``maildir``."""

    def __init__(self, maildir: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.maildir_path = Path(maildir)
        self.host = host
        self.port = port or free_port(host)
        self.delivered = 0
        self.store_failures = 0
        self._lock = threading.Lock()
        self._maildir = open_maildir(self.maildir_path)
        self._controller = Controller(
            _MaildirHandler(self),
            hostname=host,
            port=self.port,
            decode_data=False,
            enable_SMTPUTF8=True,
            data_size_limit=50 * 1024 * 1024,
        )

    def store(self, message: bytes) -> None:
        with self._lock:
            self._maildir.add(message)
            self.delivered += 1

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> MaildirSMTPServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def message_files(self) -> list[Path]:
        """Files of the delivered messages, oldest first."""
        return sorted((self.maildir_path / "new").iterdir(), key=lambda p: p.name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local SMTP server that stores each message in a Maildir.")
    parser.add_argument("maildir", type=Path, help="Maildir folder (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1025, help="port to listen on (default 1025)")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.exit(2, f"devsmtp: --port {args.port} is not a port (1-65535)\n")
    try:
        server = MaildirSMTPServer(args.maildir, host=args.host, port=args.port)
        server.start()
    except MaildirError as exc:
        parser.exit(2, f"devsmtp: {exc}\n")
    except OSError as exc:
        parser.exit(1, f"devsmtp: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
    print(f"SMTP on {args.host}:{args.port}, delivering to {args.maildir.resolve()} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print(f"stopped after {server.delivered} message(s)")


if __name__ == "__main__":
    main()
