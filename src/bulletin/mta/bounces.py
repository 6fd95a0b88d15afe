"""What a message that came back is: a bounce, a complaint, an unsubscribe request, an auto-reply, or none.

Mail reaches bulletin at the VERP envelope sender (``bounces+TOKEN@domain``) and at the
per-recipient List-Unsubscribe mailbox (``unsubscribe+TOKEN@domain``); see
:mod:`bulletin.mta.mail`. :func:`classify` reads one raw message and says what it is and which
delivery it is about; :mod:`bulletin.app.bounces` acts on the answer.

- RFC 5965 ARF (``multipart/report; report-type=feedback-report``): a complaint.
- RFC 3464 DSN (``report-type=delivery-status``): each recipient block's Action and Status; a
  ``failed`` 5.x.x is a hard bounce, ``delayed`` or 4.x.x a soft one.
- Non-standard bounces (qmail, Exim, Exchange, Yahoo...): Mailman's detectors in ``flufl.bounce``
  name the failed recipient, and whether the failure is permanent or temporary.
- RFC 3834 auto-replies (``Auto-Submitted``, ``X-Autoreply``...) and vacation or out-of-office
  replies recognised by their subject in French, English and Spanish: ignored, never counted.
- A message sent to a signed ``unsubscribe+TOKEN`` mailbox: an unsubscribe request.

The delivery is found from the VERP token of the address the message was sent to, else from
bulletin's own Message-ID quoted in the returned headers, else (bounces only) from the failed
address itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from flufl.bounce import all_failures

from bulletin.config import Settings
from bulletin.models import InboundKind
from bulletin.mta import mail

# Headers naming the address a message was delivered to, most reliable first: those an MTA or
# the delivery agent writes (Postfix, Exim, Dovecot), then the ones the sender wrote.
DELIVERY_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "x-rcpt-to", "to", "cc")

_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REPLY_RE = re.compile(r"\b[45]\d\d[ -]")
_MESSAGE_ID_RE = re.compile(r"<bulletin\.(\d+)\.(\d+)\.[a-z2-7]+@[^>\s]+>", re.IGNORECASE)

# Subjects of vacation and out-of-office replies that carry no RFC 3834 header, in FR/EN/ES.
VACATION_SUBJECT = re.compile(
    r"\b("
    # English
    r"out of (the )?office|auto(matic)?[ -]?repl(y|ies)|auto[ -]?response|autoresponder|vacation|"
    r"away from (the |my )?(office|desk)|on (annual )?leave|on holiday|holiday notice|"
    # French
    r"absen(ce|t|te)|r[ée]ponse automatique|message automatique|r[ée]pondeur|en cong[ée]s?|"
    r"hors du bureau|en vacances|"
    # Spanish
    r"fuera de (la )?oficina|respuesta autom[áa]tica|mensaje autom[áa]tico|ausen(cia|te)|"
    r"de vacaciones|contestador autom[áa]tico"
    r")\b",
    re.IGNORECASE,
)
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-reply", "x-mail-autoreply")
_AUTO_PRECEDENCE = ("auto_reply", "auto-reply", "autoreply")


@dataclass(frozen=True)
class Classified:
    """What one raw message is, and what it is about. ``kind`` None: unrecognised."""

    kind: InboundKind | None
    message_key: str
    message_id: str | None
    reason: str
    recipient: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    delivery_id: int | None = None
    # (edition id, subscriber id) read from bulletin's Message-ID in the returned message.
    edition_subscriber: tuple[int, int] | None = None


@dataclass(frozen=True)
class Ids:
    key: str
    message_id: str | None


def message_key(message_id: str | None, data: bytes) -> str:
    """The idempotency key: the Message-ID's digest, or the raw message's when it has none."""
    source = message_id.strip().encode("utf-8", "replace") if message_id else data
    return hashlib.sha256(source).hexdigest()


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:  # a malformed encoded word: keep the raw text
        return str(value)


def _addresses(message: Message, names: Iterable[str]) -> list[str]:
    values: list[str] = []
    for name in names:
        values += [str(v) for v in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if "@" in address]


def _tokens(settings: Settings, addresses: Iterable[str], base: str, purpose: str) -> Iterator[int]:
    """Deliveries named by ``base+TOKEN@...`` among the addresses (signed by this installation)."""
    if not base:
        return
    base_local = base.rpartition("@")[0].lower()
    for address in addresses:
        local = address.rpartition("@")[0].lower()
        prefix, plus, token = local.partition("+")
        if plus and prefix == base_local:
            delivery_id = mail.read_delivery_token(settings.secret_key, purpose, token)
            if delivery_id is not None:
                yield delivery_id


def _parts(message: Message) -> Iterator[Message]:
    yield from message.walk()


def _embedded_headers(message: Message) -> list[Message]:
    """The original message's headers quoted in a report (message/rfc822 or text/rfc822-headers)."""
    found: list[Message] = []
    for part in _parts(message):
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global") and part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found.append(payload[0])
        elif ctype in ("text/rfc822-headers", "text/rfc822-header"):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                found.append(message_from_bytes(raw, policy=compat32))
    return found


def _bulletin_message_id(settings: Settings, message: Message) -> tuple[int, int] | None:
    """(edition, subscriber) of a genuine bulletin Message-ID quoted in the report."""
    candidates = [str(h.get("Message-ID", "")) for h in _embedded_headers(message)]
    # Bounces that quote the original as plain text (qmail, some Exchange) are searched too.
    for part in _parts(message):
        if part.get_content_maintype() == "text":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                candidates.append(raw[:200_000].decode("utf-8", "replace"))
    for candidate in candidates:
        for match in _MESSAGE_ID_RE.finditer(candidate):
            edition_id, subscriber_id = int(match.group(1)), int(match.group(2))
            expected = mail.make_message_id(settings, edition_id, subscriber_id)
            if match.group(0).lower() == expected.lower():
                return edition_id, subscriber_id
    return None


def _report_type(message: Message) -> str:
    if message.get_content_type() != "multipart/report":
        return ""
    return str(message.get_param("report-type", "") or "").lower()


def _status_block_fields(block: Message) -> tuple[str, str, str, str]:
    """(action, status, recipient, diagnostic) of one per-recipient DSN block."""
    action = str(block.get("Action", "")).split("(")[0].strip().lower()
    status_match = _STATUS_RE.search(str(block.get("Status", "")))
    status = status_match.group(0) if status_match else ""
    recipient = ""
    for name in ("Original-Recipient", "Final-Recipient", "X-Actual-Recipient"):
        value = str(block.get(name, ""))
        if value:
            recipient = parseaddr(value.partition(";")[2].strip() or value)[1]
            if recipient:
                break
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
    if diagnostic.lower().startswith("smtp;"):
        diagnostic = diagnostic[5:].strip()
    return action, status, recipient, diagnostic


def _dsn_blocks(message: Message) -> list[tuple[str, str, str, str]]:
    blocks: list[tuple[str, str, str, str]] = []
    for part in _parts(message):
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        # The first block is about the message; the others about one recipient each.
        for block in payload[1:] if len(payload) > 1 else payload:
            if isinstance(block, Message):
                blocks.append(_status_block_fields(block))
    return blocks


def _text_of(message: Message, limit: int = 20_000) -> str:
    """The message's human-readable text parts, decoded, for diagnostics and patterns."""
    chunks: list[str] = []
    for part in _parts(message):
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                chunks.append(raw.decode(part.get_content_charset() or "utf-8", "replace"))
        if sum(map(len, chunks)) > limit:
            break
    return "\n".join(chunks)[:limit]


def _diagnostic_line(text: str, recipient: str) -> str:
    """The line of a non-standard bounce that best explains it: one with an SMTP reply or the address."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    for line in lines:
        if _SMTP_REPLY_RE.search(line) or _STATUS_RE.search(line):
            return line[:500]
    for line in lines:
        if recipient and recipient.lower() in line.lower():
            return line[:500]
    return lines[0][:500] if lines else ""


def is_auto_reply(message: Message) -> bool:
    """RFC 3834 and the common non-standard markers of an automatic reply."""
    auto = str(message.get("Auto-Submitted", "")).split(";")[0].strip().lower()
    if auto and auto != "no":
        return True
    if any(message.get(name) is not None for name in _AUTO_REPLY_HEADERS):
        return True
    precedence = str(message.get("Precedence", "")).strip().lower()
    return precedence in _AUTO_PRECEDENCE or message.get("X-Autogenerated", "").lower() == "reply"


def is_vacation_subject(subject: str) -> bool:
    return bool(VACATION_SUBJECT.search(subject))


def classify(settings: Settings, data: bytes, envelope_recipients: Iterable[str] = ()) -> Classified:
    """Say what one raw message is; ``envelope_recipients`` are the RCPT TO addresses when known."""
    message = message_from_bytes(data, policy=compat32)
    message_id = str(message.get("Message-ID", "")).strip() or None
    key = message_key(message_id, data)
    base = Ids(key, message_id)
    if not data.strip():
        return Classified(None, reason="empty message", message_key=base.key, message_id=base.message_id)
    addressed_to = list(envelope_recipients) + _addresses(message, DELIVERY_HEADERS)
    bounce_tokens = list(_tokens(settings, addressed_to, mail.bounce_address(settings), mail.BOUNCE_PURPOSE))
    verp_delivery = bounce_tokens[0] if bounce_tokens else None
    report_type = _report_type(message)

    if report_type == "feedback-report":
        return _complaint(settings, message, verp_delivery, base)
    if report_type == "delivery-status":
        dsn = _delivery_status(settings, message, verp_delivery, base)
        if dsn is not None:
            return dsn
    bounce = _non_standard_bounce(settings, message, verp_delivery, base)
    if bounce is not None:
        return bounce
    subject = _header(message, "Subject")

    def auto_reply(reason: str) -> Classified:
        """Mail that needs no action: never counted as a bounce."""
        return Classified(
            InboundKind.AUTO_REPLY,
            reason=reason,
            delivery_id=verp_delivery,
            message_key=base.key,
            message_id=base.message_id,
        )

    if str(message.get("X-Loop", "")).strip().lower() == mail.loop_marker(settings).lower():
        return auto_reply("one of bulletin's own messages came back (X-Loop)")
    if is_auto_reply(message):
        return auto_reply("automatic reply (RFC 3834)")
    unsubscribe = list(_tokens(settings, addressed_to, mail.unsubscribe_mailbox(settings), mail.UNSUBSCRIBE_PURPOSE))
    if unsubscribe:
        sender = parseaddr(_header(message, "From"))[1] or None
        return Classified(
            InboundKind.UNSUBSCRIBE,
            reason="unsubscribe request (List-Unsubscribe mailto)",
            recipient=sender,
            diagnostic=f"subject: {subject[:200]}" if subject else None,
            delivery_id=unsubscribe[0],
            message_key=base.key,
            message_id=base.message_id,
        )
    if is_vacation_subject(subject):
        return auto_reply("vacation or out-of-office reply")
    return Classified(
        None,
        reason=f"not a bounce, complaint or unsubscribe request (subject: {subject[:80]!r})",
        message_key=base.key,
        message_id=base.message_id,
    )


def _complaint(settings: Settings, message: Message, verp_delivery: int | None, base: Ids) -> Classified:
    feedback_type = ""
    for part in _parts(message):
        if part.get_content_type() == "message/feedback-report":
            fields = _feedback_fields(part)
            feedback_type = fields.get("feedback-type", "")
    embedded = _embedded_headers(message)
    recipient = None
    delivery_id = verp_delivery
    for headers in embedded:
        recipient = recipient or (parseaddr(str(headers.get("To", "")))[1] or None)
        if delivery_id is None:
            # The complained-about message's own Return-Path carries its VERP token.
            found = list(
                _tokens(
                    settings,
                    _addresses(headers, ("return-path",)),
                    mail.bounce_address(settings),
                    mail.BOUNCE_PURPOSE,
                )
            )
            delivery_id = found[0] if found else None
    if feedback_type == "not-spam":
        return Classified(
            None, reason="feedback report of type not-spam", message_key=base.key, message_id=base.message_id
        )
    return Classified(
        InboundKind.COMPLAINT,
        reason=f"complaint (ARF feedback-type {feedback_type or 'unknown'})",
        recipient=recipient,
        diagnostic=f"feedback-type: {feedback_type or 'unknown'}",
        delivery_id=delivery_id,
        edition_subscriber=_bulletin_message_id(settings, message),
        message_key=base.key,
        message_id=base.message_id,
    )


def _feedback_fields(part: Message) -> dict[str, str]:
    """The fields of a message/feedback-report part (the email package may parse it or leave it text)."""
    payload = part.get_payload()
    text = ""
    if isinstance(payload, list):
        text = "\n".join(f"{k}: {v}" for block in payload if isinstance(block, Message) for k, v in block.items())
    elif isinstance(payload, str):
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else payload
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip():
            fields.setdefault(name.strip().lower(), value.strip().lower())
    return fields


def _delivery_status(settings: Settings, message: Message, verp_delivery: int | None, base: Ids) -> Classified | None:
    blocks = _dsn_blocks(message)
    failed = [b for b in blocks if b[0].startswith(("failed", "error"))]
    delayed = [b for b in blocks if b[0].startswith("delayed")]
    chosen = failed[0] if failed else (delayed[0] if delayed else None)
    if chosen is None:
        # A success notice (delivered, relayed, expanded) or an empty report: not a bounce.
        return None
    action, status, recipient, diagnostic = chosen
    permanent = action.startswith(("failed", "error")) and not status.startswith("4")
    status = status or ("5.0.0" if permanent else "4.0.0")
    return Classified(
        InboundKind.HARD_BOUNCE if permanent else InboundKind.SOFT_BOUNCE,
        reason=f"delivery status notification ({action} {status})",
        recipient=recipient or None,
        status=status,
        diagnostic=diagnostic[:1000] or None,
        delivery_id=verp_delivery,
        edition_subscriber=_bulletin_message_id(settings, message),
        message_key=base.key,
        message_id=base.message_id,
    )


def _non_standard_bounce(
    settings: Settings, message: Message, verp_delivery: int | None, base: Ids
) -> Classified | None:
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on a strange message: treat it as not a bounce
        return None
    failures = sorted(permanent) or sorted(temporary)
    if not failures:
        return None
    is_permanent = bool(permanent)
    recipient = failures[0].decode("ascii", "replace")
    text = _text_of(message)
    diagnostic = _diagnostic_line(text, recipient)
    found = _STATUS_RE.search(diagnostic) or _STATUS_RE.search(text)
    status = found.group(0) if found and found.group(1) == ("5" if is_permanent else "4") else None
    status = status or ("5.0.0" if is_permanent else "4.0.0")
    return Classified(
        InboundKind.HARD_BOUNCE if is_permanent else InboundKind.SOFT_BOUNCE,
        reason=f"non-standard bounce ({'permanent' if is_permanent else 'temporary'} {status})",
        recipient=recipient,
        status=status,
        diagnostic=diagnostic or None,
        delivery_id=verp_delivery,
        edition_subscriber=_bulletin_message_id(settings, message),
        message_key=base.key,
        message_id=base.message_id,
    )
