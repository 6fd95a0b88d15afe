"""RFC 5322 messages: one built with the email package, and fast per-recipient copies of a variant.

:func:`build_message` makes a complete :class:`~email.message.EmailMessage` (opt-in emails,
reviewers' test sends). For an edition, :class:`VariantTemplate` builds the message of one
variant once, with the email package, and keeps it as pre-encoded byte segments; each recipient's
copy is then those segments joined around their own To, Date, Message-ID, List-Unsubscribe and
the placeholders of :mod:`bulletin.compose.placeholders`, without re-rendering or re-encoding the body.

Both bodies are quoted-printable UTF-8, so no line is longer than 76 octets. A per-recipient
value is put on lines of its own between soft line breaks, which keeps the encoding valid
whatever the length of a name or link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html as html_lib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import idna

from bulletin.compose import placeholders
from bulletin.config import Settings
from bulletin.errors import BulletinError

# Headers a DKIM signature covers: those the bulk-sender rules name, oversigned (listed once more
# than they occur, RFC 6376 8.15) so that a copy of any of them added on top, or added where the
# message had none, breaks the signature.
DKIM_OVERSIGNED = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
# Signed when present: the MIME structure.
DKIM_SIGNED = (b"mime-version", b"content-type")


class UriListHeader(UnstructuredHeader):
    """A header of ``<uri>`` items (List-Unsubscribe) folded between items, never encoded.

    The email package would fold a long URL into RFC 2047 encoded-words, which no mail client
    reads back as a link.
    """

    def fold(self, *, policy: Any) -> str:
        header = cast(BaseHeader, self)
        return fold_uri_list(header.name, str(header), policy.linesep)


def fold_uri_list(name: str, value: str, linesep: str = "\r\n") -> str:
    """``Name: <a>,<linesep> <b><linesep>``: one item per line, each item kept whole."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    return f"{name}: " + f",{linesep} ".join(items) + linesep


def _header_registry() -> HeaderRegistry:
    registry = HeaderRegistry()
    # The registry mixes BaseHeader into the class it is given; typeshed wants it already there.
    registry.map_to_type("list-unsubscribe", cast(type[BaseHeader], UriListHeader))
    return registry


# SMTP line endings, lines folded at 78, and List-Unsubscribe kept readable.
POLICY = email_policy.SMTP.clone(header_factory=_header_registry())


# ---------------------------------------------------------------------------
# Identifiers and list headers


def sender_domain(settings: Settings) -> str:
    return settings.sender.from_address.rpartition("@")[2].lower() or "localhost"


def make_message_id(settings: Settings, edition_id: int, subscriber_id: int) -> str:
    """The Message-ID of an edition for one subscriber: the same on every retry.

    A keyed digest makes it unique to this installation, so a message of another database
    that happens to share the ids is never taken for a duplicate by a mailbox provider.
    """
    mac = hmac.new(settings.secret_key.encode(), f"{edition_id}:{subscriber_id}".encode(), hashlib.sha256)
    digest = base64.b32encode(mac.digest()[:10]).decode("ascii").lower()
    return f"<bulletin.{edition_id}.{subscriber_id}.{digest}@{sender_domain(settings)}>"


def list_id(settings: Settings) -> str:
    name = settings.organisation.list_name.replace('"', "").strip()
    return f'"{name}" <{settings.sender.list_id}>' if name else f"<{settings.sender.list_id}>"


def list_unsubscribe(settings: Settings, url: str, delivery_id: int | None = None) -> str:
    """RFC 2369 value: the one-click https URL first, then the mailto alternative.

    With a delivery the mailto names it (``unsubscribe+TOKEN@...``), so a request works whatever
    subject or body the mail client writes.
    """
    mailbox = unsubscribe_mailbox(settings, delivery_id)
    if not mailbox:
        return f"<{url}>"
    return f"<{url}>, <mailto:{mailbox}?subject=unsubscribe>"


# ---------------------------------------------------------------------------
# VERP: envelope senders and unsubscribe mailboxes that name the delivery

BOUNCE_PURPOSE = "bounce"
UNSUBSCRIBE_PURPOSE = "unsubscribe"
# 10 bytes of MAC (80 bits) in hexadecimal: 20 characters.
_TOKEN_MAC_BYTES = 10
_TOKEN_RE = re.compile(r"^([0-9a-z]{1,13})-([0-9a-f]{20})$")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


@lru_cache(maxsize=8)
def _token_key(secret: str) -> bytes:
    """A 32-byte key for the token MACs, derived once from the installation's secret."""
    return hashlib.sha256(b"bulletin-verp\0" + secret.encode()).digest()


def _token_mac(secret: str, purpose: str, delivery_id: int) -> str:
    # Keyed BLAKE2b is a MAC by design and, with a hex digest, costs about a microsecond: two
    # tokens go into every message.
    mac = hashlib.blake2b(f"{purpose}:{delivery_id}".encode(), key=_token_key(secret), digest_size=_TOKEN_MAC_BYTES)
    return mac.hexdigest()


@lru_cache(maxsize=64)
def _bounce_address(configured: str, from_address: str) -> str:
    return configured or f"bounces@{from_address.rpartition('@')[2].lower() or 'localhost'}"


def delivery_token(secret: str, purpose: str, delivery_id: int) -> str:
    """A short signed token naming a delivery: ``<id base36>-<mac>``, lower case.

    Lower case because some MTAs lower-case the local part of the address they bounce to; the
    purpose is in the MAC so that a bounce token cannot be used as an unsubscribe one.
    """
    return f"{_base36(delivery_id)}-{_token_mac(secret, purpose, delivery_id)}"


def read_delivery_token(secret: str, purpose: str, token: str) -> int | None:
    """The delivery a token names, or None when it is malformed or not signed by this installation."""
    match = _TOKEN_RE.match(token.strip().lower())
    if match is None:
        return None
    delivery_id = int(match.group(1), 36)
    if not hmac.compare_digest(match.group(2), _token_mac(secret, purpose, delivery_id)):
        return None
    return delivery_id


def bounce_address(settings: Settings) -> str:
    """``delivery.bounce_address``, by default ``bounces@`` the From domain."""
    return _bounce_address(settings.delivery.bounce_address, settings.sender.from_address)


def _tagged(address: str, tag: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}+{tag}@{domain}"


def envelope_sender(settings: Settings, delivery_id: int | None = None) -> str:
    """The MAIL FROM of a message: ``bounces+TOKEN@domain`` for a delivery, the bare address otherwise."""
    address = bounce_address(settings)
    if delivery_id is None:
        return address
    return _tagged(address, delivery_token(settings.secret_key, BOUNCE_PURPOSE, delivery_id))


def unsubscribe_mailbox(settings: Settings, delivery_id: int | None = None) -> str:
    """The List-Unsubscribe mailto address, tagged with the delivery when there is one; "" if none is set."""
    mailbox = settings.sender.unsubscribe_mailto
    if not mailbox or delivery_id is None:
        return mailbox
    return _tagged(mailbox, delivery_token(settings.secret_key, UNSUBSCRIBE_PURPOSE, delivery_id))


def message_date(moment: float | None = None) -> str:
    """An RFC 5322 Date in UTC with a numeric zone (``+0000``; the obsolete ``GMT`` must not be generated)."""
    when = datetime.fromtimestamp(time.time() if moment is None else moment, UTC)
    return format_datetime(when)


def _from_header(settings: Settings) -> Address:
    local, _, domain = settings.sender.from_address.rpartition("@")
    return Address(display_name=settings.sender.from_name, username=local, domain=domain)


def loop_marker(settings: Settings) -> str:
    """The X-Loop value of every message: the bounce mailbox, where a message that loops back arrives."""
    return bounce_address(settings)


def _add_list_headers(message: EmailMessage, settings: Settings, *, one_click: bool = True) -> None:
    """The headers every message carries, and, for a list message, the one-click unsubscribe.

    Every message is generated by the list, so it names it (RFC 2919 List-Id); ``Precedence:
    bulk`` asks auto-responders not to answer (RFC 3834 2) and X-Loop lets the bounce processor
    recognise its own messages coming back. Receivers read these as a list manager's mail.
    """
    message["List-Id"] = list_id(settings)
    if one_click:
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # RFC 2369: where the list's past messages are.
        message["List-Archive"] = f"<{settings.web.base_url.rstrip('/')}/archive/>"
    message["Precedence"] = "bulk"
    message["X-Loop"] = loop_marker(settings)


# ---------------------------------------------------------------------------
# One complete message


def build_message(
    settings: Settings,
    *,
    to_email: str,
    to_name: str | None,
    subject: str,
    html: str,
    text: str,
    message_id: str,
    list_unsubscribe_url: str | None,
    extra_headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """A complete multipart/alternative (text, then HTML) message.

    Every message has List-Id, ``Precedence: bulk`` and X-Loop. With ``list_unsubscribe_url`` it
    is a list message and List-Unsubscribe (https and mailto) and List-Unsubscribe-Post are added;
    without it (an opt-in confirmation, a notice to staff) they are not: there is nothing to leave.
    """
    message = EmailMessage(policy=POLICY)
    message["From"] = _from_header(settings)
    if settings.sender.reply_to:
        message["Reply-To"] = settings.sender.reply_to
    # The whole display name is one encoded phrase, so a name holding "<", "@" or "(" cannot add an address.
    message["To"] = Address(display_name=to_name or "", addr_spec=to_email)
    message["Subject"] = subject
    message["Date"] = message_date()
    message["Message-ID"] = message_id
    if list_unsubscribe_url:
        message["List-Unsubscribe"] = list_unsubscribe(settings, list_unsubscribe_url)
    _add_list_headers(message, settings, one_click=bool(list_unsubscribe_url))
    for name, value in (extra_headers or {}).items():
        message[name] = value
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    if html:
        message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


# ---------------------------------------------------------------------------
# DKIM


@dataclass
class DkimSigner:
    """Signs serialized messages with the configured key (dkimpy, relaxed/relaxed, rsa-sha256)."""

    selector: bytes
    domain: bytes
    key: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The signer of these settings, or None when DKIM is not configured."""
        dkim = settings.dkim
        if not dkim.key_path:
            return None
        if not dkim.selector:
            raise BulletinError("dkim.selector must be set when dkim.key_path is")
        path = settings.resolve_path(dkim.key_path)
        try:
            key = Path(path).read_bytes()
        except OSError as exc:
            raise BulletinError(f"cannot read the DKIM key {path}: {exc.strerror}") from None
        domain = dkim.domain or sender_domain(settings)
        signer = cls(selector=dkim.selector.encode(), domain=domain.encode(), key=key)
        # Sign once now so that a bad key is reported before anything is sent.
        signer.sign(b"From: a@b\r\nTo: c@d\r\nSubject: x\r\n\r\nx\r\n")
        return signer

    def sign(self, data: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        import dkim

        try:
            signature: bytes = dkim.sign(
                data,
                self.selector,
                self.domain,
                self.key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=signed_headers(data),
            )
        except dkim.DKIMException as exc:
            raise BulletinError(f"DKIM signing failed: {exc}") from None
        return signature + data


def signed_headers(data: bytes) -> list[bytes]:
    """The h= list: each oversigned header once more than it occurs, the MIME ones as they occur."""
    head = data.split(b"\r\n\r\n", 1)[0]
    counts: dict[bytes, int] = {}
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        name = line.partition(b":")[0].strip().lower()
        counts[name] = counts.get(name, 0) + 1
    names: list[bytes] = []
    for name in DKIM_OVERSIGNED:
        names += [name] * (counts.get(name, 0) + 1)
    for name in DKIM_SIGNED:
        names += [name] * counts.get(name, 0)
    return names


def message_bytes(settings: Settings, message: EmailMessage, signer: DkimSigner | None = None) -> bytes:
    """The message as sent: CRLF line endings, DKIM-signed when a signer is given."""
    data = message.as_bytes(policy=POLICY)
    return signer.sign(data) if signer else data


# ---------------------------------------------------------------------------
# Fast per-recipient copies of a variant


@dataclass(frozen=True)
class Recipient:
    """What differs between two copies of the same variant."""

    email: str
    name: str | None
    message_id: str
    unsubscribe_url: str
    preferences_url: str
    # The ledger row of this copy: named by the List-Unsubscribe mailto (VERP).
    delivery_id: int | None = None


def _qp(data: bytes) -> bytes:
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)


def _qp_value(value: str) -> bytes:
    """A value on its own quoted-printable lines, ending in a soft line break."""
    if not value:
        return b"="
    # Soft line breaks between the value's own lines must be CRLF like the rest of the message.
    return _qp(value.encode("utf-8")).replace(b"\n", b"\r\n") + b"="


def _encode_body(body: str, marker: str, cut: bytes, slots: list[tuple[str, str]], kind: str) -> bytes:
    """Quoted-printable body (CRLF) with each slot of ``marker`` replaced by a cut mark on a line of its own.

    ``slots`` collects (slot name, part kind) for each cut, numbered by position. The cut marks
    hold a random word, so no subject or header can contain one.
    """
    out: list[bytes] = []
    body = body.replace("\r\n", "\n")
    # Like the email package, end the body with a line break.
    if not body.endswith("\n"):
        body += "\n"
    for index, piece in enumerate(placeholders.split(body, marker)):
        if index % 2:
            out.append(b"=X%sS%d=X\n" % (cut, len(slots)))
            slots.append((piece, kind))
            continue
        if not piece:
            continue
        encoded = _qp(piece.encode("utf-8"))
        out.append(encoded if encoded.endswith(b"\n") else encoded + b"=\n")
    encoded_body = b"".join(out)
    if not encoded_body.endswith(b"\n"):
        encoded_body += b"\n"
    return encoded_body.replace(b"\n", b"\r\n")


def _text_part(body_qp: str, subtype: str) -> EmailMessage:
    part = EmailMessage(policy=POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(body_qp)
    return part


@dataclass
class VariantTemplate:
    """The message of one variant, built once; :meth:`personalise` fills it for one recipient."""

    # The message between slots, dot-stuffed for SMTP once here (every segment after the first
    # starts a line); :meth:`personalise` undoes the stuffing for the plain message.
    stuffed_segments: list[bytes]
    slots: list[tuple[str, str]]
    unsubscribe_mailto: str = ""
    signer: DkimSigner | None = None
    # Signs the per-delivery unsubscribe mailbox (see :func:`unsubscribe_mailbox`).
    secret: str = field(default="", repr=False)
    _date_cache: tuple[int, bytes] = field(default=(0, b""), repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        subject: str,
        html: str,
        text: str,
        marker: str,
        extra_headers: Mapping[str, str] | None = None,
        signer: DkimSigner | None = None,
    ) -> VariantTemplate:
        """Build the constant part of the message with the email package and split it at the slots.

        ``marker`` names the edition's slots (:func:`bulletin.compose.placeholders.edition_marker`).
        """
        slots: list[tuple[str, str]] = []
        cut = secrets.token_hex(8).upper().encode("ascii")
        message = EmailMessage(policy=POLICY)
        message["From"] = _from_header(settings)
        if settings.sender.reply_to:
            message["Reply-To"] = settings.sender.reply_to
        message["Subject"] = subject
        _add_list_headers(message, settings)
        for name, value in (extra_headers or {}).items():
            message[name] = value
        message["MIME-Version"] = "1.0"
        # The email package lays out headers and MIME structure around short markers; the
        # quoted-printable bodies, encoded in one C call each, take the markers' place after.
        bodies = [_encode_body(text, marker, cut, slots, "text")]
        body_mark = "=X" + cut.decode("ascii") + "B%d=X\n"
        parts = [_text_part(body_mark % 0, "plain")]
        if html:
            bodies.append(_encode_body(html, marker, cut, slots, "html"))
            parts.append(_text_part(body_mark % 1, "html"))
        if len(parts) == 1:
            message["Content-Type"] = 'text/plain; charset="utf-8"'
            message["Content-Transfer-Encoding"] = "quoted-printable"
            message.set_payload(body_mark % 0)
        else:
            message["Content-Type"] = "multipart/alternative"
            for part in parts:
                message.attach(part)
            # "=_" never occurs in quoted-printable text, so the boundary cannot clash with a body.
            digest = hashlib.sha256(subject.encode() + text.encode() + html.encode()).hexdigest()[:24]
            message.set_boundary(f"=_bulletin_{digest}")
        data = message.as_bytes(policy=POLICY)
        for number, body in enumerate(bodies):
            data = data.replace((body_mark % number).encode("ascii").replace(b"\n", b"\r\n"), body, 1)
        if (placeholders.UNSUBSCRIBE_URL, "text") not in slots:
            # Sent like this, no copy would carry its reader's unsubscribe link.
            raise BulletinError("the variant has no unsubscribe slot of its edition: render the edition again")
        pieces = re.compile(rb"=X" + cut + rb"S(\d+)=X").split(data)
        return cls(
            stuffed_segments=[dot_stuff(segment) for segment in pieces[0::2]],
            slots=slots,
            unsubscribe_mailto=settings.sender.unsubscribe_mailto,
            signer=signer,
            secret=settings.secret_key if settings.sender.unsubscribe_mailto else "",
        )

    def _date(self) -> bytes:
        now = int(time.time())
        if self._date_cache[0] != now:
            self._date_cache = (now, message_date(now).encode("ascii"))
        return self._date_cache[1]

    def _list_unsubscribe(self, url: str, delivery_id: int | None) -> str:
        mailbox = self.unsubscribe_mailto
        if not mailbox:
            return f"<{url}>"
        if delivery_id is not None:
            mailbox = _tagged(mailbox, delivery_token(self.secret, UNSUBSCRIBE_PURPOSE, delivery_id))
        return f"<{url}>, <mailto:{mailbox}?subject=unsubscribe>"

    def personalise(self, recipient: Recipient) -> bytes:
        """This recipient's copy: the RFC 5322 message, DKIM-signed when configured."""
        # Every line-start dot of the stuffed copy was doubled, so halving them restores the message.
        data = self._join(recipient).replace(b"\r\n..", b"\r\n.")
        return self.signer.sign(data) if self.signer else data

    def personalise_for_smtp(self, recipient: Recipient) -> bytes:
        """This recipient's copy already dot-stuffed for SMTP DATA (RFC 5321 4.5.2).

        The template's segments are stuffed once when it is built, so a copy costs no scan of
        the whole message; a signed copy is stuffed after signing, as the signature requires.
        """
        if self.signer:
            return dot_stuff(self.personalise(recipient))
        return self._join(recipient)

    def _join(self, recipient: Recipient) -> bytes:
        head = b"".join(
            (
                to_header(recipient.name, recipient.email),
                b"Date: " + self._date() + b"\r\n",
                _short_header("Message-ID", recipient.message_id),
                fold_uri_list(
                    "List-Unsubscribe", self._list_unsubscribe(recipient.unsubscribe_url, recipient.delivery_id)
                ).encode("ascii"),
            )
        )
        values = _slot_values(recipient)
        segments = self.stuffed_segments
        out = [head, segments[0]]
        for index, slot in enumerate(self.slots):
            out.append(values[slot])
            out.append(segments[index + 1])
        return b"".join(out)


# A display name and an address the email package would write as they are: atoms separated by
# single spaces (no "=?", which it would read as an encoded word) and a dot-atom address.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]"
_PLAIN_NAME = re.compile(rf"{_ATEXT}+(?: {_ATEXT}+)*\Z")
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")


def ascii_address(email: str) -> str:
    """The address with its domain in A-labels (IDNA 2008) when only the domain is non-ASCII.

    Such an address then needs no SMTPUTF8, in the envelope or in a header. An address whose
    local part is non-ASCII is returned as it is: only an SMTPUTF8 server can take it.
    """
    local, _, domain = email.rpartition("@")
    if email.isascii() or not local.isascii():
        return email
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return email


# Stands for the address while the display name is folded, for an address the email package cannot write.
_STAND_IN = "x@stand-in.invalid"


def to_header(name: str | None, email: str) -> bytes:
    """The ``To`` line of one copy, as the email package folds it (it is asked only when needed).

    A non-ASCII local part is written in UTF-8 (RFC 6532); the transport sends such a copy only
    to a server that offers SMTPUTF8, and fails that delivery alone otherwise.
    """
    address = ascii_address(email)
    if not address.isascii():
        return to_header(name, _STAND_IN).replace(_STAND_IN.encode("ascii"), address.encode("utf-8"))
    if _PLAIN_ADDRESS.match(address) and (not name or _PLAIN_NAME.match(name)):
        line = f"To: {name} <{address}>\r\n" if name else f"To: {address}\r\n"
        if len(line) <= 80:
            return line.encode("ascii")
    return POLICY.fold_binary("To", formataddr((name or "", address)))


def _short_header(name: str, value: str) -> bytes:
    """``Name: value`` for an ASCII value without spaces that fits on one line, else folded by the policy."""
    line = f"{name}: {value}\r\n"
    if len(line) <= 80 and value.isascii() and " " not in value:
        return line.encode("ascii")
    return POLICY.fold_binary(name, value)


_LEADING_DOT = re.compile(rb"(?m)^\.")


def dot_stuff(data: bytes) -> bytes:
    """Double every dot that starts a line, as SMTP DATA requires."""
    if data.startswith(b".") or b"\n." in data:
        return _LEADING_DOT.sub(b"..", data)
    return data


def _slot_values(recipient: Recipient) -> dict[tuple[str, str], bytes]:
    values: dict[tuple[str, str], bytes] = {}
    filled = placeholders.recipient_values(recipient.name, recipient.unsubscribe_url, recipient.preferences_url)
    for placeholder, raw in filled.items():
        text_value = _qp_value(raw)
        html_value = _qp_value(html_lib.escape(raw, quote=True))
        # A value starts a line of its own, so its first dot is a line's first dot too.
        values[placeholder, "text"] = dot_stuff(text_value)
        values[placeholder, "html"] = dot_stuff(html_value)
    return values
