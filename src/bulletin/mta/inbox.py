"""Where returned mail comes from: files, a Maildir, standard input, an IMAP mailbox or an LMTP/SMTP receiver.

Every path ends in :func:`process_message`: classify (:mod:`bulletin.mta.bounces`), then act
(:mod:`bulletin.app.bounces`) in one short transaction per message, so one bad message never
undoes another and an IMAP message is moved away only once its effect is committed.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import mailbox
import ssl
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from bulletin.app.bounces import Report, already_processed, apply_report
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import BulletinError
from bulletin.mta.bounces import Classified, classify

log = logging.getLogger(__name__)

# Largest message read from anywhere: a bounce quoting a whole bulletin is well under this.
MAX_MESSAGE_BYTES = 10_000_000


@dataclass(frozen=True)
class Processed:
    """One message's fate: ``kind`` is what it was (or "unrecognised"), ``action`` what was done."""

    source: str
    kind: str
    action: str
    reason: str
    email: str | None = None
    edition_id: int | None = None

    @property
    def handled(self) -> bool:
        """Recognised (and so recorded): an IMAP message may be moved to the processed folder."""
        return self.kind != "unrecognised"


@dataclass
class RunSummary:
    """What one run of ``bulletin bounces process``, ``fetch`` or ``serve`` did.

    ``keep`` False counts without keeping each result: a receiver may run for months.
    """

    results: list[Processed] = field(default_factory=list)
    keep: bool = True
    kinds: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    total: int = 0

    def add(self, result: Processed) -> None:
        self.total += 1
        if result.action != "duplicate":
            self.kinds[result.kind] += 1
        self.actions[result.action] += 1
        if self.keep:
            self.results.append(result)

    def line(self) -> str:
        """The one summary line of a run."""
        kinds, actions = self.kinds, self.actions
        total = self.total
        parts = [
            f"{kinds['hard']} hard bounce(s)",
            f"{kinds['soft']} soft bounce(s)",
            f"{kinds['complaint']} complaint(s)",
            f"{kinds['unsubscribe']} unsubscribe request(s)",
            f"{kinds['auto-reply']} auto-reply(ies) ignored",
            f"{kinds['unrecognised']} unrecognised",
            f"{actions['duplicate']} already processed",
        ]
        effect = f"{actions['bounced']} subscriber(s) bounced, {actions['unsubscribed']} unsubscribed"
        return f"{total} message(s): " + ", ".join(parts) + f"; {effect}."

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.total,
            "kinds": dict(self.kinds),
            "actions": dict(self.actions),
            "results": [r.__dict__ for r in self.results],
        }


def process_message(
    engine: Engine, settings: Settings, data: bytes, *, source: str, envelope_recipients: Iterable[str] = ()
) -> Processed:
    """Classify one raw message and act on it, once (a message seen before is ``duplicate``)."""
    if len(data) > MAX_MESSAGE_BYTES:
        return Processed(source, "unrecognised", "none", f"larger than {MAX_MESSAGE_BYTES} bytes: not read")
    found = classify(settings, data, envelope_recipients)
    if found.kind is None:
        with reading(engine) as session:
            seen = already_processed(session, found.message_key)
        action = "duplicate" if seen else "none"
        return Processed(source, "unrecognised", action, found.reason)
    report = _report(found)
    try:
        with transaction(engine) as session:
            applied = apply_report(session, settings, report)
    except IntegrityError:
        # Another run recorded the same Message-ID between our look and our write.
        return Processed(source, found.kind.value, "duplicate", found.reason)
    return Processed(source, found.kind.value, applied.action, found.reason, applied.email, applied.edition_id)


def _report(found: Classified) -> Report:
    assert found.kind is not None
    return Report(
        kind=found.kind,
        message_key=found.message_key,
        message_id=found.message_id,
        recipient=found.recipient,
        status=found.status,
        diagnostic=found.diagnostic,
        delivery_id=found.delivery_id,
        edition_subscriber=found.edition_subscriber,
    )


# ---------------------------------------------------------------------------
# Files, Maildirs and standard input


def _is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def _read_limited(handle: Any, name: str) -> bytes:
    data: bytes = handle.read(MAX_MESSAGE_BYTES + 1)
    if len(data) > MAX_MESSAGE_BYTES:
        raise BulletinError(f"{name}: larger than {MAX_MESSAGE_BYTES} bytes, not a bounce")
    return data


def read_sources(sources: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    """(name, raw message) for each file, each message of each Maildir, and standard input for ``-``.

    Every source is checked before the first message is yielded, so a typo in the last name
    stops the run before anything is done.
    """
    paths: list[str] = list(sources)
    for name in paths:
        if name == "-":
            continue
        path = Path(name)
        if not path.exists():
            raise BulletinError(f"{name}: no such file or Maildir")
        if path.is_dir() and not _is_maildir(path):
            raise BulletinError(f"{name}: a folder but not a Maildir (no cur/, new/ and tmp/)")
    for name in paths:
        if name == "-":
            yield "<stdin>", _read_limited(sys.stdin.buffer, "<stdin>")
            continue
        path = Path(name)
        if path.is_dir():
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(box.keys()):
                with box.get_file(key) as handle:
                    yield f"{name}/{key}", _read_limited(handle, f"{name}/{key}")
            continue
        try:
            with path.open("rb") as handle:
                yield name, _read_limited(handle, name)
        except OSError as exc:
            raise BulletinError(f"{name}: cannot read: {exc.strerror}") from None


def process_sources(engine: Engine, settings: Settings, sources: Iterable[str]) -> RunSummary:
    """``bulletin bounces process``: every message of the named files, Maildirs or ``-``."""
    summary = RunSummary()
    for name, data in read_sources(sources):
        summary.add(process_message(engine, settings, data, source=name))
    return summary


# ---------------------------------------------------------------------------
# IMAP over TLS


def _imap_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.bounces.ca_file:
        try:
            context.load_verify_locations(cafile=str(settings.resolve_path(settings.bounces.ca_file)))
        except (OSError, ssl.SSLError) as exc:
            raise BulletinError(f"bounces.ca_file: cannot load {settings.bounces.ca_file}: {exc}") from None
    return context


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(reply: tuple[str, Any], what: str) -> Any:
    status, data = reply
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise BulletinError(f"IMAP {what} failed: {detail or status}")
    return data


def open_imap(settings: Settings, *, timeout: float = 30.0) -> imaplib.IMAP4_SSL:
    """A logged-in IMAP connection over TLS to ``[bounces] imap_host``."""
    config = settings.bounces
    if not config.imap_host:
        raise BulletinError("bounces.imap_host is not set: there is no bounce mailbox to fetch")
    if not config.user:
        raise BulletinError("bounces.user is not set")
    password = settings.bounce_password
    if not password:
        raise BulletinError("BULLETIN_BOUNCE_PASSWORD is not set")
    try:
        client = imaplib.IMAP4_SSL(
            config.imap_host, config.imap_port, ssl_context=_imap_context(settings), timeout=timeout
        )
    except ssl.SSLError as exc:
        raise BulletinError(f"IMAP TLS with {config.imap_host}:{config.imap_port} failed: {exc.reason}") from None
    except OSError as exc:
        raise BulletinError(f"cannot reach IMAP server {config.imap_host}:{config.imap_port}: {exc}") from None
    try:
        client.login(config.user, password)
    except imaplib.IMAP4.error as exc:
        client.shutdown()
        raise BulletinError(f"IMAP login as {config.user} failed: {exc}") from None
    return client


def fetch_imap(engine: Engine, settings: Settings) -> RunSummary:
    """``bulletin bounces fetch``: process every message of the folder; move the recognised ones.

    Messages are read with BODY.PEEK, so an unrecognised one stays unread and in place for a
    person to look at. A recognised one is moved to ``processed_folder`` after its transaction.
    """
    config = settings.bounces
    summary = RunSummary()
    client = open_imap(settings)
    try:
        _ensure_folder(client, config.processed_folder)
        _check(client.select(_quoted(config.folder)), f"SELECT {config.folder}")
        uids = [uid.decode() for uid in _check(client.uid("SEARCH", "ALL"), "SEARCH")[0].split()]
        can_move = "MOVE" in _capabilities(client)
        moved = False
        for uid in uids:
            fetched = _check(client.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH")
            data = next((item[1] for item in fetched if isinstance(item, tuple)), None)
            if not isinstance(data, bytes):
                continue
            result = process_message(engine, settings, data, source=f"imap:{config.folder}/{uid}")
            summary.add(result)
            if result.handled:
                _move(client, uid, config.processed_folder, can_move)
                moved = True
        if moved and not can_move:
            _check(client.expunge(), "EXPUNGE")
    except imaplib.IMAP4.error as exc:
        raise BulletinError(f"IMAP error: {exc}") from None
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            client.shutdown()
    return summary


def _capabilities(client: imaplib.IMAP4_SSL) -> set[str]:
    """The capabilities after login (imaplib keeps only those announced before it)."""
    data = _check(client.capability(), "CAPABILITY")
    return {word.upper() for word in data[0].decode("ascii", "replace").split()}


def _ensure_folder(client: imaplib.IMAP4_SSL, folder: str) -> None:
    status, data = client.list('""', _quoted(folder))
    if status == "OK" and any(item for item in data if item):
        return
    _check(client.create(_quoted(folder)), f"CREATE {folder}")


def _move(client: imaplib.IMAP4_SSL, uid: str, folder: str, can_move: bool) -> None:
    if can_move:
        _check(client.uid("MOVE", uid, _quoted(folder)), "MOVE")
        return
    _check(client.uid("COPY", uid, _quoted(folder)), "COPY")
    _check(client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)"), "STORE")


# ---------------------------------------------------------------------------
# LMTP (or SMTP) receiver, for an MTA that forwards the bounce domain to bulletin


class _InboundHandler:
    """aiosmtpd handler: each message is processed before it is accepted, so none is lost."""

    def __init__(self, engine: Engine, settings: Settings, summary: RunSummary, lmtp: bool) -> None:
        self.engine = engine
        self.settings = settings
        self.summary = summary
        self.lmtp = lmtp

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        recipients = list(envelope.rcpt_tos)
        peer = session.peer[0] if session.peer else "?"
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                None,
                lambda: process_message(
                    self.engine, self.settings, data, source=f"lmtp:{peer}", envelope_recipients=recipients
                ),
            )
        except Exception:
            log.exception("processing a message from %s failed", peer)
            reply = "451 4.3.0 Could not process the message now; try again later"
        else:
            self.summary.add(result)
            log.info("%s: %s -> %s (%s)", result.source, result.kind, result.action, result.reason)
            reply = f"250 2.0.0 Ok: {result.kind}, {result.action}"
        # LMTP answers DATA once per recipient (RFC 2033 4.2); SMTP once.
        return "\r\n".join([reply] * len(recipients)) if self.lmtp else reply


class InboundServer:
    """An LMTP (default) or SMTP server on ``host:port`` that processes every message it receives."""

    def __init__(
        self, engine: Engine, settings: Settings, *, host: str = "127.0.0.1", port: int = 8025, lmtp: bool = True
    ) -> None:
        self.summary = RunSummary(keep=False)
        handler = _InboundHandler(engine, settings, self.summary, lmtp)
        protocol = LMTP if lmtp else SMTP

        class _Controller(Controller):
            def factory(self) -> Any:
                return protocol(self.handler, **self.SMTP_kwargs)

        self.controller = _Controller(
            handler,
            hostname=host,
            port=port,
            data_size_limit=MAX_MESSAGE_BYTES,
            ready_timeout=10.0,
        )
        self.host = host

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> None:
        try:
            self.controller.start()
        except OSError as exc:
            raise BulletinError(f"cannot listen on {self.host}:{self.controller.port}: {exc.strerror or exc}") from None

    def stop(self) -> None:
        self.controller.stop()
