"""Messages that are not bulletins: one builder, a safe To header, the reader's language, the welcome email."""

from __future__ import annotations

import email
from email import policy
from email.headerregistry import Address
from pathlib import Path
from typing import Literal

import pytest

from bulletin.app.optin import OptinEmail
from bulletin.compose import placeholders
from bulletin.models import SubscriberStatus
from bulletin.mta.notices import (
    VariantCopy,
    build_optin_message,
    copy_for_tester,
    sample_values,
    send_optin_email,
    void_notice_message,
)

from .smtp_server import RecordingSMTPServer
from .web_support import (
    WebEnv,
    add_subscriber_row,
    csrf_of,
    make_env,
    token_of,
    web_env,  # noqa: F401  (the web fixture)
    web_settings,
)

# Issue 13, finding 2: parsers read the old To header as attacker@evil.example.
HOSTILE_NAME = "é <attacker@evil.example> ("
KINDS: list[Literal["confirm", "already_subscribed", "welcome"]] = ["confirm", "already_subscribed", "welcome"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_display_name_cannot_add_an_address_to_any_opt_in_email(
    kind: Literal["confirm", "already_subscribed", "welcome"], tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = web_settings(tmp_path, smtp_port=smtp_server.port)
    # A name stored before names were checked at input (the form and imports now refuse it).
    plan = OptinEmail(kind, 7, "victim@example.org", HOSTILE_NAME, "fr", interests="youth")
    assert send_optin_email(settings, plan)
    (received,) = smtp_server.wait_for(1)
    assert received.recipients == ["victim@example.org"]
    raw_to = next(line for line in received.data.split(b"\r\n\r\n")[0].split(b"\r\n") if line.startswith(b"To:"))
    assert b"attacker@evil.example" not in received.data.split(b"\r\n\r\n")[0]
    assert raw_to.startswith(b"To:")
    parsed = email.message_from_bytes(received.data, policy=policy.default)
    assert parsed["To"].addresses == (Address(display_name=HOSTILE_NAME, addr_spec="victim@example.org"),)


# Commas, quotes and parentheses are allowed in names, and are address syntax in a header.
TRICKY_NAME = 'Ana, "la jefa" (Pérez'


def test_a_name_with_address_syntax_typed_in_the_form_reaches_only_the_subscriber(web: WebEnv) -> None:
    page = web.client.get("/subscribe")
    web.client.post(
        "/subscribe",
        data={"email": "victim@example.org", "name": TRICKY_NAME, "language": "en", "csrf_token": csrf_of(page.text)},
    )
    (received,) = web.smtp.wait_for(1)
    assert received.recipients == ["victim@example.org"]
    parsed = received.parse()
    assert parsed["To"].addresses == (Address(display_name=TRICKY_NAME, addr_spec="victim@example.org"),)


def _confirm(web: WebEnv, token: str) -> str:
    """Open the confirmation link and press its button; return the form's CSRF token."""
    page = web.client.get(f"/confirm/{token}")
    csrf = csrf_of(page.text)
    response = web.client.post(f"/confirm/{token}", data={"csrf_token": csrf})
    assert response.status_code == 200
    return csrf


def test_a_confirmed_subscriber_is_welcomed_in_their_language_with_their_topics_and_link(web: WebEnv) -> None:
    subscriber_id = add_subscriber_row(
        web.engine, "ines@example.org", status=SubscriberStatus.PENDING, language="es", interests="cities,youth"
    )
    token = token_of(web, "confirm", subscriber_id, "ines@example.org")
    csrf = _confirm(web, token)
    (received,) = web.smtp.wait_for(1)
    assert received.recipients == ["ines@example.org"]
    welcome = received.parse()
    assert welcome["Subject"] == "Bienvenido a Prevention News"
    assert welcome["Auto-Submitted"] == "auto-generated" and welcome["List-Unsubscribe"] is None
    text = welcome.get_body(("plain",))
    html = welcome.get_body(("html",))
    assert text is not None and html is not None
    body = text.get_content()
    assert "Su suscripción a Prevention News" in body
    assert "Seguridad urbana, Juventud" in body
    preferences = token_of(web, "preferences", subscriber_id, "ines@example.org")
    assert f"http://testserver/preferences/{preferences}" in body
    assert f'href="http://testserver/preferences/{preferences}"' in html.get_content()
    assert '<html lang="es">' in html.get_content()
    # Pressing the button again changes nothing, so nobody is welcomed twice.
    assert web.client.post(f"/confirm/{token}", data={"csrf_token": csrf}).status_code == 200
    assert len(web.smtp.messages) == 1


def test_every_topic_is_said_so_in_the_welcome_email(web: WebEnv) -> None:
    subscriber_id = add_subscriber_row(web.engine, "eve@example.org", status=SubscriberStatus.PENDING, language="en")
    _confirm(web, token_of(web, "confirm", subscriber_id, "eve@example.org"))
    (received,) = web.smtp.wait_for(1)
    text = received.parse().get_body(("plain",))
    assert text is not None and "You will receive the news on every topic." in text.get_content()


def test_no_welcome_email_when_it_is_switched_off(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    web = make_env(tmp_path, smtp_server, web={"welcome_email": False})
    subscriber_id = add_subscriber_row(web.engine, "noel@example.org", status=SubscriberStatus.PENDING, language="fr")
    _confirm(web, token_of(web, "confirm", subscriber_id, "noel@example.org"))
    assert smtp_server.messages == []
    web.engine.dispose()


def test_notices_to_staff_and_testers_are_in_the_readers_language(tmp_path: Path) -> None:
    settings = web_settings(tmp_path)
    notice = void_notice_message(
        settings, to_email="desk@example.org", edition_id=4, problems=["the templates changed"], language="es"
    )
    assert notice["Subject"] == "[Prevention News] La edición 4 necesita una nueva aprobación"
    assert "La edición 4 ha vuelto a revisión" in notice.get_content()
    name_slot = placeholders.slot("MARKER", placeholders.NAME)
    copy = VariantCopy(4, "fr|", "Bulletin", f"<html><body>{name_slot}</body></html>", f"Bonjour{name_slot}", "MARKER")
    test = copy_for_tester(
        settings,
        copy,
        to_email="eddie@example.org",
        to_name="Eddie <x@y>",
        language="fr",
        values=sample_values(settings, "Eddie <x@y>"),
    )
    assert test["Subject"] == "[ESSAI] Bulletin"
    assert [a.addr_spec for a in test["To"].addresses] == ["eddie@example.org"]
    html = test.get_body(("html",))
    assert html is not None and "Eddie &lt;x@y&gt;" in html.get_content()
    # Every one of them goes through the same builder: the same automatic-message header.
    plan = OptinEmail("confirm", 1, "a@example.org", None, "en")
    assert {
        notice["Auto-Submitted"],
        test["Auto-Submitted"],
        build_optin_message(settings, plan)["Auto-Submitted"],
    } == {"auto-generated"}
