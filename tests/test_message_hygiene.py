"""What every message looks like to a standards check: Date, DKIM oversigning, the HTML head, opt-in emails."""

from __future__ import annotations

import base64
import re
import subprocess
from email import policy
from email.parser import BytesParser
from pathlib import Path

import dkim
import lxml.html
import pytest
from sqlalchemy import Engine

from bulletin.app.optin import OptinEmail
from bulletin.compose import placeholders
from bulletin.compose.render import render_variants
from bulletin.config import Settings, settings_from_dict
from bulletin.db import transaction
from bulletin.models import Edition
from bulletin.mta import mail
from bulletin.mta.notices import build_optin_message

from .compose_fixtures import make_edition

OVERSIGNED = ("From", "To", "Subject", "Date", "Message-ID", "Reply-To", "List-Id", "List-Unsubscribe")


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Settings, bytes]:
    """Settings with a DKIM key, and the DNS TXT record of its public half."""
    key_path = tmp_path / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key_path), "2048"], check=True, capture_output=True
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key_path), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    settings = settings_from_dict(
        {
            "sender": {"from_address": "news@centre.example.org", "unsubscribe_mailto": "leave@centre.example.org"},
            "dkim": {"key_path": str(key_path), "selector": "s1"},
        },
        tmp_path,
    )
    return settings, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def bulletin_copy(settings: Settings) -> bytes:
    signer = mail.DkimSigner.from_settings(settings)
    leave = placeholders.slot("TESTMARKER", placeholders.UNSUBSCRIBE_URL)
    template = mail.VariantTemplate.build(
        settings,
        subject="Bulletin",
        html=f'<p>Bonjour</p><a href="{leave}">Se désabonner</a>',
        text=f"Bonjour\n{leave}",
        marker="TESTMARKER",
        signer=signer,
    )
    recipient = mail.Recipient(
        "ana@example.net",
        "Ana",
        mail.make_message_id(settings, 1, 2),
        "https://bulletin.example.org/u/x",
        "https://bulletin.example.org/p/x",
        delivery_id=9,
    )
    return template.personalise(recipient)


@pytest.mark.parametrize("header", [*OVERSIGNED, "List-Unsubscribe-Post"])
def test_a_second_copy_of_a_signed_header_added_on_top_breaks_the_signature(
    signed: tuple[Settings, bytes], header: str
) -> None:
    settings, record = signed
    data = bulletin_copy(settings)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record

    assert dkim.verify(data, dnsfunc=dns)
    # Reply-To is not set here: adding one where there was none must break the signature too.
    added = f"{header}: forged value\r\n".encode()
    assert not dkim.verify(added + data, dnsfunc=dns)
    signature_end = data.index(b"\r\n", data.index(b"b=")) + 2
    while data[signature_end : signature_end + 1] in (b" ", b"\t"):
        signature_end = data.index(b"\r\n", signature_end) + 2
    assert not dkim.verify(data[:signature_end] + added + data[signature_end:], dnsfunc=dns)


def test_date_has_a_numeric_zone(settings: Settings) -> None:
    message = mail.build_message(
        settings,
        to_email="a@example.net",
        to_name=None,
        subject="x",
        html="",
        text="x",
        message_id="<x@example.org>",
        list_unsubscribe_url=None,
    )
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", str(message["Date"]))
    leave = placeholders.slot("TESTMARKER", placeholders.UNSUBSCRIBE_URL)
    copy = mail.VariantTemplate.build(settings, subject="x", html="", text=leave, marker="TESTMARKER").personalise(
        mail.Recipient("a@example.net", None, "<y@example.org>", "https://e.org/u", "https://e.org/p")
    )
    date = re.search(rb"^Date: (.*)\r$", copy, re.MULTILINE)
    assert date is not None and date.group(1).endswith(b" +0000") and b"GMT" not in date.group(1)


def test_bulletin_html_head_preheader_and_dark_mode(engine: Engine, settings: Settings) -> None:
    edition_id = make_edition(engine, settings)
    with transaction(engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        variants = render_variants(session, settings, edition)
    assert variants
    for variant in variants:
        html = variant.html
        root = lxml.html.fromstring(html)
        for style in root.xpath("//style"):
            assert "</head>" not in (style.text or "") and "<head>" not in (style.text or "")
        assert "}</head></style>" not in html
        schemes = root.xpath("//head/meta[@name='color-scheme']/@content")
        assert schemes == ["light dark"]
        assert "prefers-color-scheme: dark" in html
        (preheader,) = root.xpath("//body/div[contains(@style,'display:none')]")
        style = preheader.get("style")
        assert "color" not in style and "font-size" not in style and "opacity" not in style
        assert variant.preheader in preheader.text_content()


@pytest.mark.parametrize("kind", ["confirm", "already_subscribed"])
@pytest.mark.parametrize("language", ["fr", "en", "es"])
def test_optin_emails_have_a_preheader_and_a_wrapped_text_part(settings: Settings, kind: str, language: str) -> None:
    plan = OptinEmail(kind=kind, subscriber_id=3, email="ana@example.net", name="Ana María", language=language)  # type: ignore[arg-type]
    data = mail.message_bytes(settings, build_optin_message(settings, plan))
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    root = lxml.html.fromstring(html)
    (preheader,) = root.xpath("//body/div[contains(@style,'display:none')]")
    assert len(preheader.text_content().strip()) > 20
    assert root.xpath("//head/meta[@name='color-scheme']/@content") == ["light dark"]
    long_lines = [line for line in text.splitlines() if len(line) > 72 and not line.startswith("https://")]
    assert long_lines == []
    assert "https://" in text
