"""The subscribe page: double opt-in email, the same answer for every address, rate limits, CSRF."""

from __future__ import annotations

from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bulletin.db import reading
from bulletin.models import RateEvent, Subscriber, SubscriberStatus

from .smtp_server import RecordingSMTPServer
from .web_support import (
    WebEnv,
    add_subscriber_row,
    csrf_of,
    make_env,
    received_links,
    subscriber_state,
    web_env,  # noqa: F401  (the web fixture)
)


def subscribe(web: WebEnv, email: str, *, language: str = "fr", interests: tuple[str, ...] = (), **headers: str):  # type: ignore[no-untyped-def]
    page = web.client.get("/subscribe", headers=headers)
    data = {"email": email, "name": "", "language": language, "interests": list(interests)}
    data["csrf_token"] = csrf_of(page.text)
    return web.client.post("/subscribe", data=data, headers=headers)


def subscriber_count(web: WebEnv) -> int:
    with reading(web.engine) as session:
        return int(session.scalar(select(func.count()).select_from(Subscriber)) or 0)


@pytest.mark.parametrize(
    ("accept", "lang", "expected"),
    [
        ("es-MX,es;q=0.9,en;q=0.5", "", "Suscríbase a Prevention News"),
        ("de-DE,en;q=0.7", "", "Subscribe to Prevention News"),
        ("", "", "Abonnez-vous à Prevention News"),
        ("es", "en", "Subscribe to Prevention News"),
    ],
)
def test_page_language_follows_switcher_then_browser_then_default(
    web: WebEnv, accept: str, lang: str, expected: str
) -> None:
    headers = {"accept-language": accept} if accept else {}
    response = web.client.get("/subscribe" + (f"?lang={lang}" if lang else ""), headers=headers)
    assert response.status_code == 200
    assert expected in response.text


def test_switcher_choice_is_remembered(web: WebEnv) -> None:
    web.client.get("/subscribe?lang=es")
    page = web.client.get("/subscribe", headers={"accept-language": "en"})
    assert '<html lang="es">' in page.text
    assert 'hreflang="fr"' in page.text and 'hreflang="en"' in page.text


def test_topics_are_checkboxes_labelled_in_the_page_language(web: WebEnv) -> None:
    page = web.client.get("/subscribe?lang=es").text
    assert 'type="checkbox" name="interests" value="youth"' in page
    assert "Juventud" in page and "Ciberdelincuencia" in page
    assert "Youth" not in page
    # Every input has a label.
    assert '<label for="email">' in page and '<label for="name">' in page


def test_new_address_gets_a_confirmation_email_in_the_chosen_language(web: WebEnv) -> None:
    response = subscribe(web, "Ana.Perez@example.org", language="es", interests=("youth", "cities"))
    assert response.status_code == 303
    assert response.headers["location"] == "/subscribe/sent"
    sent = web.client.get("/subscribe/sent")
    assert "Ana.Perez@example.org" in sent.text

    subscriber = subscriber_state(web.engine, "ana.perez@example.org")
    assert subscriber is not None
    assert subscriber.status == SubscriberStatus.PENDING
    assert (subscriber.language, subscriber.interests) == ("es", "cities,youth")
    assert subscriber.consent_source == "web"

    messages = web.smtp.wait_for(1)
    message = messages[0].parse()
    assert messages[0].recipients == ["Ana.Perez@example.org"]
    assert message["Subject"] == "Confirme su suscripción a Prevention News"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] is None
    assert "Este enlace es válido durante 7 días." in message.get_body(("plain",)).get_content()
    links = received_links(web.smtp)
    assert links[0].startswith("http://testserver/confirm/")
    html = message.get_body(("html",)).get_content()
    assert 'lang="es"' in html and links[0] in html


def test_answer_is_the_same_for_new_pending_and_active_addresses(web: WebEnv) -> None:
    add_subscriber_row(web.engine, "active@example.org", status=SubscriberStatus.ACTIVE, language="en")
    add_subscriber_row(web.engine, "pending@example.org", status=SubscriberStatus.PENDING)
    answers = []
    for email in ("new@example.org", "pending@example.org", "active@example.org"):
        response = subscribe(web, email)
        page = web.client.get(response.headers["location"]).text.replace(email, "ADDRESS")
        answers.append((response.status_code, response.headers["location"], page))
    assert answers[0] == answers[1] == answers[2]
    web.smtp.wait_for(3)


def test_active_subscriber_gets_a_manage_preferences_email_and_nothing_changes(web: WebEnv) -> None:
    add_subscriber_row(web.engine, "li@example.org", language="en", interests="youth")
    subscribe(web, "LI@example.org", language="fr", interests=("drugs",))
    message = web.smtp.wait_for(1)[0].parse()
    assert message["Subject"] == "Vous êtes déjà abonné·e à Prevention News"
    assert message["Auto-Submitted"] == "auto-generated"
    assert any("/preferences/" in link for link in received_links(web.smtp))
    subscriber = subscriber_state(web.engine, "li@example.org")
    assert subscriber is not None
    assert (subscriber.status, subscriber.language, subscriber.interests) == (SubscriberStatus.ACTIVE, "en", "youth")


def test_unsubscribed_person_can_subscribe_again_through_a_new_confirmation(web: WebEnv) -> None:
    add_subscriber_row(web.engine, "back@example.org", status=SubscriberStatus.UNSUBSCRIBED)
    subscribe(web, "back@example.org", language="en")
    # Nothing changes until the link is followed: the request travels in the link.
    subscriber = subscriber_state(web.engine, "back@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED
    assert subscriber.language == "fr"
    link = received_links(web.smtp)[0]
    assert "/confirm/" in link
    path = "/confirm/" + link.rsplit("/confirm/", 1)[1]
    page = web.client.get(path)
    assert page.status_code == 200
    web.client.post(path, data={"csrf_token": csrf_of(page.text)})
    subscriber = subscriber_state(web.engine, "back@example.org")
    assert subscriber is not None and (subscriber.status, subscriber.language) == (SubscriberStatus.ACTIVE, "en")


def test_blocked_address_gets_the_same_page_and_no_email(web: WebEnv) -> None:
    add_subscriber_row(web.engine, "blocked@example.org", status=SubscriberStatus.BLOCKED)
    response = subscribe(web, "blocked@example.org")
    assert response.headers["location"] == "/subscribe/sent"
    assert web.smtp.messages == []


@pytest.mark.parametrize(
    ("email", "language", "interests", "error"),
    [
        ("not-an-address", "fr", (), "Saisissez une adresse courriel valide"),
        ("ok@example.org", "de", (), "Choisissez l'une des langues proposées"),
        ("ok@example.org", "fr", ("astrology",), "Choisissez parmi les thèmes proposés"),
    ],
)
def test_bad_input_shows_the_form_again_with_the_error(
    web: WebEnv, email: str, language: str, interests: tuple[str, ...], error: str
) -> None:
    response = subscribe(web, email, language=language, interests=interests)
    assert response.status_code == 400
    assert error in unescape(response.text)
    assert f'value="{email}"' in response.text
    assert subscriber_count(web) == 0


def test_missing_or_wrong_csrf_token_changes_nothing(web: WebEnv) -> None:
    web.client.get("/subscribe")
    for token in (None, "forged-token"):
        data = {"email": "x@example.org", "language": "fr"}
        if token:
            data["csrf_token"] = token
        response = web.client.post("/subscribe", data=data)
        assert response.status_code == 403
        assert "Ce formulaire avait expiré" in response.text
    assert subscriber_count(web) == 0
    assert web.smtp.messages == []


def test_filled_honeypot_gets_the_normal_answer_but_nothing_happens(web: WebEnv) -> None:
    page = web.client.get("/subscribe")
    response = web.client.post(
        "/subscribe",
        data={"email": "bot@example.org", "language": "fr", "website": "http://spam", "csrf_token": csrf_of(page.text)},
    )
    assert response.headers["location"] == "/subscribe/sent"
    assert subscriber_count(web) == 0


def test_confirmation_emails_are_limited_per_address(web: WebEnv) -> None:
    for _ in range(5):
        response = subscribe(web, "many@example.org")
        assert response.headers["location"] == "/subscribe/sent"
    assert len(web.smtp.messages) == web.settings.web.confirm_emails_per_address == 3
    with reading(web.engine) as session:
        keys = session.scalars(select(RateEvent.key)).all()
    assert all("many" not in key for key in keys), "the rate log must not keep addresses in clear"


def test_subscription_requests_are_limited_per_client_ip(tmp_path: Path, smtp_server: RecordingSMTPServer) -> None:
    web = make_env(tmp_path, smtp_server, web={"confirm_emails_per_ip": 2})
    codes = [subscribe(web, f"person{i}@example.org").status_code for i in range(3)]
    assert codes == [303, 303, 429]
    last = subscribe(web, "other@example.org")
    assert last.status_code == 429 and last.headers["retry-after"] == "3600"
    assert "Trop de demandes" in last.text
    assert subscriber_count(web) == 2
    web.engine.dispose()


def test_smtp_failure_does_not_show_an_error_or_lose_the_request(tmp_path: Path) -> None:
    from .smtp_server import free_port

    closed_port = free_port()
    server = RecordingSMTPServer()
    web = make_env(tmp_path, server, smtp={"host": "127.0.0.1", "port": closed_port, "timeout": 2.0})
    response = subscribe(web, "later@example.org")
    assert response.status_code == 303
    subscriber = subscriber_state(web.engine, "later@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING
    web.engine.dispose()
