"""Messages meet RFC 5322 and the bulk-sender header rules; personalised copies equal full builds."""

from __future__ import annotations

import re
import subprocess
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path

import pytest

from bulletin.app.links import read_token
from bulletin.config import Settings, settings_from_dict
from bulletin.mta import mail

from .conftest import SECRET
from .send_fixtures import TEST_MARKER, slots, variant_body


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def body_of(message: EmailMessage, kind: str) -> str:
    """The decoded text of a part, with line endings as a mail client shows them."""
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def all_defects(message: EmailMessage) -> list[object]:
    defects = [d for part in message.walk() for d in part.defects]
    for part in message.walk():
        for name in part:
            defects += part[name].defects
    return defects


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_from_dict(
        {
            "sender": {
                "from_address": "news@centre.example.org",
                "from_name": "Centre international — Bulletin",
                "reply_to": "contact@centre.example.org",
                "unsubscribe_mailto": "leave@centre.example.org",
                "list_id": "bulletin.centre.example.org",
            },
            "web": {"base_url": "https://lists.centre.example.org"},
        },
        tmp_path,
    )


def recipient(settings: Settings, name: str | None = "Ana Pérez", email: str = "ana@example.net") -> mail.Recipient:
    from bulletin.app.links import subscriber_url

    return mail.Recipient(
        email=email,
        name=name,
        message_id=mail.make_message_id(settings, 7, 42),
        unsubscribe_url=subscriber_url(settings, "unsubscribe", 42, email, "nonce42"),
        preferences_url=subscriber_url(settings, "preferences", 42, email, "nonce42"),
    )


def test_personalised_copy_has_every_required_header_and_no_defect(settings: Settings) -> None:
    subject, html, text = variant_body("fr", "youth", 7)
    template = mail.VariantTemplate.build(settings, subject=subject, html=html, text=text, marker=TEST_MARKER)
    who = recipient(settings)
    data = template.personalise(who)
    message = parse(data)

    assert all_defects(message) == []
    assert message["From"].addresses[0].addr_spec == "news@centre.example.org"
    assert message["From"].addresses[0].display_name == "Centre international — Bulletin"
    assert message["Reply-To"] == "contact@centre.example.org"
    assert message["To"].addresses[0].display_name == "Ana Pérez"
    assert message["To"].addresses[0].addr_spec == "ana@example.net"
    assert message["Subject"] == subject
    assert message["Date"].datetime is not None
    assert message["Message-ID"] == who.message_id
    assert message["List-Id"] == '"Bulletin" <bulletin.centre.example.org>'
    assert message["List-Unsubscribe"] == (
        f"<{who.unsubscribe_url}>, <mailto:leave@centre.example.org?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Precedence"] == "bulk"
    assert message.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    for part in message.iter_parts():
        assert part.get_content_charset() == "utf-8"
    # The signed unsubscribe link names this subscriber.
    token = who.unsubscribe_url.rsplit("/", 1)[1]
    assert read_token(SECRET, "unsubscribe", token).subscriber_id == 42


def test_placeholders_are_filled_escaped_in_html_and_raw_in_text(settings: Settings) -> None:
    subject, html, text = variant_body("es", "", 7)
    template = mail.VariantTemplate.build(settings, subject=subject, html=html, text=text, marker=TEST_MARKER)
    who = recipient(settings, name='Zoé <"Z"> & Cía')
    message = parse(template.personalise(who))
    html_body = body_of(message, "html")
    text_body = body_of(message, "plain")

    for body in (html_body, text_body):
        assert not any(p in body for p in slots())
    assert "Bonjour Zoé &lt;&quot;Z&quot;&gt; &amp; Cía," in html_body
    assert 'Bonjour Zoé <"Z"> & Cía,' in text_body
    assert f'href="{who.unsubscribe_url}"' in html_body
    assert f'href="{who.preferences_url}"' in html_body
    assert f"Se désabonner : {who.unsubscribe_url}\n" in text_body
    # Everything else is the variant's text, byte for byte.
    name_slot, unsubscribe_slot, preferences_slot = slots()
    expected_text = (
        text.replace(name_slot, ' Zoé <"Z"> & Cía')
        .replace(unsubscribe_slot, who.unsubscribe_url)
        .replace(preferences_slot, who.preferences_url)
    )
    assert text_body == expected_text


def test_no_name_leaves_no_gap(settings: Settings) -> None:
    subject, html, text = variant_body("en", "", 3)
    template = mail.VariantTemplate.build(settings, subject=subject, html=html, text=text, marker=TEST_MARKER)
    message = parse(template.personalise(recipient(settings, name=None)))
    assert message["To"] == "ana@example.net"
    assert "<p>Bonjour,</p>" in body_of(message, "html")


def test_lines_stay_short_whatever_the_values(settings: Settings) -> None:
    subject, html, text = variant_body("fr", "", 1)
    # One enormous line of HTML, as minified email HTML often is.
    html = html.replace("\n", "") + "x" * 5000
    template = mail.VariantTemplate.build(settings, subject=subject * 3, html=html, text=text, marker=TEST_MARKER)
    who = recipient(settings, name="María José " * 30, email="someone.with.a.long.address@sub.example.net")
    data = template.personalise(who)
    lines = data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    # Apart from List-Unsubscribe (one URL per line, never split) the lines fit in 78 octets.
    long_lines = [line for line in lines if len(line) > 78]
    assert all(line.startswith(b"List-Unsubscribe: <https://") for line in long_lines), long_lines
    assert b"\n" not in data.replace(b"\r\n", b"")
    message = parse(data)
    assert all_defects(message) == []
    assert body_of(message, "html").endswith("x" * 5000 + "\n")


def test_personalised_copy_equals_a_full_build(settings: Settings) -> None:
    subject, html, text = variant_body("fr", "cities,youth", 9)
    who = recipient(settings)
    template = mail.VariantTemplate.build(settings, subject=subject, html=html, text=text, marker=TEST_MARKER)
    fast = parse(template.personalise(who))
    name_slot, unsubscribe_slot, preferences_slot = slots()
    values = {name_slot: " Ana Pérez", unsubscribe_slot: who.unsubscribe_url}
    values[preferences_slot] = who.preferences_url
    full_html, full_text = html, text
    for key, value in values.items():
        full_html = full_html.replace(key, value)
        full_text = full_text.replace(key, value)
    slow = mail.build_message(
        settings,
        to_email=who.email,
        to_name=who.name,
        subject=subject,
        html=full_html,
        text=full_text,
        message_id=who.message_id,
        list_unsubscribe_url=who.unsubscribe_url,
    )
    for header in ("From", "Reply-To", "To", "Subject", "Message-ID", "List-Id", "List-Unsubscribe", "Precedence"):
        assert str(fast[header]) == str(slow[header]), header
    slow = parse(mail.message_bytes(settings, slow))
    assert body_of(fast, "html") == body_of(slow, "html")
    assert body_of(fast, "plain") == body_of(slow, "plain")


def test_build_message_without_unsubscribe_url_is_not_a_list_message(settings: Settings) -> None:
    message = mail.build_message(
        settings,
        to_email="ana@example.net",
        to_name=None,
        subject="Confirmez votre abonnement",
        html="<p>Confirmez</p>",
        text="Confirmez",
        message_id="<optin.1@centre.example.org>",
        list_unsubscribe_url=None,
        extra_headers={"Auto-Submitted": "auto-generated"},
    )
    parsed = parse(mail.message_bytes(settings, message))
    assert all_defects(parsed) == []
    # Nothing to unsubscribe from yet; but the message names its list and asks responders not to answer.
    for header in ("List-Unsubscribe", "List-Unsubscribe-Post"):
        assert header not in parsed
    assert parsed["List-Id"] and parsed["Precedence"] == "bulk" and parsed["X-Loop"] == "bounces@centre.example.org"
    assert parsed["Auto-Submitted"] == "auto-generated"


def test_long_unsubscribe_url_is_never_encoded(settings: Settings) -> None:
    url = "https://lists.centre.example.org/unsubscribe/" + "A" * 200
    message = mail.build_message(
        settings,
        to_email="ana@example.net",
        to_name="Ana",
        subject="x",
        html="<p>x</p>",
        text="x",
        message_id="<a@b>",
        list_unsubscribe_url=url,
    )
    data = mail.message_bytes(settings, message)
    assert f"List-Unsubscribe: <{url}>,\r\n <mailto:".encode() in data
    assert parse(data)["List-Unsubscribe"] == f"<{url}>, <mailto:leave@centre.example.org?subject=unsubscribe>"


def test_message_id_is_stable_per_edition_and_subscriber(settings: Settings) -> None:
    first = mail.make_message_id(settings, 3, 10)
    assert first == mail.make_message_id(settings, 3, 10)
    assert first != mail.make_message_id(settings, 3, 11)
    assert first != mail.make_message_id(settings, 4, 10)
    assert re.fullmatch(r"<bulletin\.3\.10\.[a-z2-7]{16}@centre\.example\.org>", first)


def test_dkim_signature_covers_the_required_headers_and_verifies(settings: Settings, tmp_path: Path) -> None:
    import dkim

    key_path = tmp_path / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key_path), "2048"], check=True, capture_output=True
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key_path), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    signed_settings = settings_from_dict(
        {
            "sender": {"from_address": "news@centre.example.org"},
            "dkim": {"key_path": str(key_path), "selector": "mail2026"},
        },
        tmp_path,
    )
    signer = mail.DkimSigner.from_settings(signed_settings)
    assert signer is not None
    subject, html, text = variant_body("fr", "", 1)
    template = mail.VariantTemplate.build(
        signed_settings, subject=subject, html=html, text=text, marker=TEST_MARKER, signer=signer
    )
    data = template.personalise(recipient(signed_settings))
    assert data.startswith(b"DKIM-Signature:")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.centre.example.org."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    signature = parse(data)["DKIM-Signature"]
    signed = {h.strip().lower() for h in re.search(r"h=([^;]+)", str(signature)).group(1).split(":")}  # type: ignore[union-attr]
    required = {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"}
    assert required <= signed
    # A copy for someone else is signed anew (its body differs).
    other = template.personalise(recipient(signed_settings, email="bob@example.net"))
    assert dkim.verify(other, dnsfunc=dns)
    tampered = data.replace(b"Bonjour", b"Bonsoir", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_missing_dkim_key_is_one_clear_error(tmp_path: Path) -> None:
    from bulletin.errors import BulletinError

    broken = settings_from_dict({"dkim": {"key_path": "nowhere.pem", "selector": "s1"}}, tmp_path)
    with pytest.raises(BulletinError, match="cannot read the DKIM key"):
        mail.DkimSigner.from_settings(broken)


@pytest.mark.parametrize(
    ("name", "email"),
    [
        (None, "ana@example.net"),
        ("Ana Perez", "ana@example.net"),
        ("Ana Pérez", "ana@example.net"),
        ("Dr. Ana Perez", "ana@example.net"),
        ("Perez, Ana", "ana@example.net"),
        ('Ana "la jefa" Perez', "ana@example.net"),
        ("=?utf-8?q?Ana?=", "ana@example.net"),
        ("Ana  Perez", "ana@example.net"),
        (" Ana", "ana@example.net"),
        ("O'Brien-Smith", "o.brien+news@mail.example.co.uk"),
        ("Jean " * 15, "jean@example.net"),
        ("Ana", "a" * 70 + "@example.net"),
    ],
)
def test_the_to_line_is_the_one_the_email_package_writes(name: str | None, email: str) -> None:
    # The fast line of a plain name is exactly what the email package folds; others go through it.
    folded = mail.POLICY.fold_binary("To", mail.formataddr((name or "", email)))
    assert mail.to_header(name, email) == folded
    assert not parse(mail.to_header(name, email) + b"\r\nbody\r\n")["To"].defects


def test_link_tokens_are_the_ones_itsdangerous_makes_and_reads(settings: Settings) -> None:
    from itsdangerous import URLSafeSerializer

    from bulletin.app.links import make_token

    for purpose in ("unsubscribe", "preferences"):
        for subscriber_id, email, nonce in [
            (1, "a@example.net", "n" * 16),
            (987654, "Ana@Exämple.net", "aaaaaaaaaaaaaaaa"),
        ]:
            token = make_token(SECRET, purpose, subscriber_id, email, nonce)  # type: ignore[arg-type]
            expected = URLSafeSerializer(SECRET, salt=f"bulletin-{purpose}").dumps(
                [subscriber_id, mail.hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16], nonce]
            )
            assert token == expected
            subject = read_token(SECRET, purpose, token)  # type: ignore[arg-type]
            assert (subject.subscriber_id, subject.nonce) == (subscriber_id, nonce)
    # A token signed for one purpose is refused for the other.
    with pytest.raises(Exception, match="invalid"):
        read_token(SECRET, "preferences", make_token(SECRET, "unsubscribe", 1, "a@example.net", "n" * 16))


def test_an_international_address_gets_a_to_line_it_can_travel_with() -> None:
    # Only the domain is non-ASCII: written in A-labels, which any server takes.
    assert mail.to_header("Ana Pérez", "ana@exämple.net") == mail.POLICY.fold_binary(
        "To", mail.formataddr(("Ana Pérez", "ana@xn--exmple-cua.net"))
    )
    # A non-ASCII local part: UTF-8 (RFC 6532), the name still encoded, and nothing lost.
    line = mail.to_header("Ana Pérez", "anä@exämple.net")
    message = Parser(policy=policy.SMTPUTF8).parsestr((line + b"\r\nbody\r\n").decode("utf-8"))
    assert message["To"].addresses[0].addr_spec == "anä@exämple.net"
    assert message["To"].addresses[0].display_name == "Ana Pérez"
    assert b"=?utf-8?" in line
