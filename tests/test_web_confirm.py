"""The confirmation page of the double opt-in: a button, consent recorded, bad links refused."""

from __future__ import annotations

from html import unescape

import pytest
from sqlalchemy import select

from bulletin.app.links import CONFIRM_MAX_AGE
from bulletin.db import reading
from bulletin.models import SubscriberEvent, SubscriberStatus

from .web_support import (
    WebEnv,
    add_subscriber_row,
    csrf_of,
    link_nonce,
    old_confirm_token,
    subscriber_state,
    tampered,
    token_of,
    web_env,  # noqa: F401  (the web fixture)
)


def pending(web: WebEnv, email: str = "ines@example.org", language: str = "es") -> tuple[int, str]:
    subscriber_id = add_subscriber_row(web.engine, email, status=SubscriberStatus.PENDING, language=language)
    return subscriber_id, token_of(web, "confirm", subscriber_id, email)


def test_opening_the_link_shows_a_button_and_changes_nothing(web: WebEnv) -> None:
    _, token = pending(web)
    page = web.client.get(f"/confirm/{token}")
    assert page.status_code == 200
    assert '<html lang="es">' in page.text
    assert "Confirmar mi suscripción" in page.text and 'method="post"' in page.text
    subscriber = subscriber_state(web.engine, "ines@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING


def test_pressing_the_button_activates_and_records_the_consent(web: WebEnv) -> None:
    _, token = pending(web)
    page = web.client.get(f"/confirm/{token}")
    response = web.client.post(
        f"/confirm/{token}", data={"csrf_token": csrf_of(page.text)}, headers={"user-agent": "TestBrowser/1.0"}
    )
    assert response.status_code == 200
    assert "Gracias, su suscripción está confirmada" in response.text
    subscriber = subscriber_state(web.engine, "ines@example.org")
    assert subscriber is not None
    assert subscriber.status == SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at is not None
    assert subscriber.consent_ip == "testclient"
    assert subscriber.consent_user_agent == "TestBrowser/1.0"
    # Pressing again changes nothing more.
    again = web.client.post(f"/confirm/{token}", data={"csrf_token": csrf_of(page.text)})
    assert again.status_code == 200
    with reading(web.engine) as session:
        events = session.scalars(select(SubscriberEvent).where(SubscriberEvent.new_status == "active")).all()
    assert len(events) == 1


def test_confirmation_without_csrf_token_is_refused(web: WebEnv) -> None:
    _, token = pending(web)
    web.client.get(f"/confirm/{token}")
    response = web.client.post(f"/confirm/{token}", data={})
    assert response.status_code == 403
    subscriber = subscriber_state(web.engine, "ines@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING


@pytest.mark.parametrize("damage", ["tampered", "truncated", "garbage", "other-purpose"])
def test_bad_links_get_a_clear_page_and_change_nothing(web: WebEnv, damage: str) -> None:
    subscriber_id, token = pending(web)
    bad = {
        "tampered": tampered(token),
        "truncated": token[: len(token) // 2],
        "garbage": "not-a-token",
        "other-purpose": token_of(web, "unsubscribe", subscriber_id, "ines@example.org"),
    }[damage]
    page = web.client.get(f"/confirm/{bad}", headers={"accept-language": "en"})
    assert page.status_code == 400
    assert "This link is not valid" in page.text and "Nothing has been changed" in page.text
    web.client.get("/subscribe")
    response = web.client.post(f"/confirm/{bad}", data={"csrf_token": csrf_of(web.client.get("/subscribe").text)})
    assert response.status_code == 400
    subscriber = subscriber_state(web.engine, "ines@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING


def test_expired_link_says_so_and_changes_nothing(web: WebEnv) -> None:
    subscriber_id, _ = pending(web, language="fr")
    token = old_confirm_token(
        subscriber_id, "ines@example.org", link_nonce(web.engine, subscriber_id), age_seconds=CONFIRM_MAX_AGE + 60
    )
    page = web.client.get(f"/confirm/{token}")
    assert page.status_code == 410
    assert "Ce lien a expiré" in unescape(page.text)
    assert 'href="/subscribe"' in page.text
    csrf = csrf_of(web.client.get("/subscribe").text)
    assert web.client.post(f"/confirm/{token}", data={"csrf_token": csrf}).status_code == 410
    subscriber = subscriber_state(web.engine, "ines@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING


def test_link_a_day_before_expiry_still_works(web: WebEnv) -> None:
    subscriber_id, _ = pending(web)
    token = old_confirm_token(
        subscriber_id, "ines@example.org", link_nonce(web.engine, subscriber_id), age_seconds=CONFIRM_MAX_AGE - 86400
    )
    assert web.client.get(f"/confirm/{token}").status_code == 200


def test_old_link_of_someone_who_left_does_not_bring_them_back(web: WebEnv) -> None:
    subscriber_id = add_subscriber_row(web.engine, "gone@example.org", status=SubscriberStatus.UNSUBSCRIBED)
    token = token_of(web, "confirm", subscriber_id, "gone@example.org")
    page = web.client.get(f"/confirm/{token}")
    assert page.status_code == 200 and "Ce lien ne fonctionne plus" in page.text
    web.client.post(f"/confirm/{token}", data={"csrf_token": csrf_of(web.client.get("/subscribe").text)})
    subscriber = subscriber_state(web.engine, "gone@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED


def test_link_for_an_erased_address_is_invalid(web: WebEnv) -> None:
    from bulletin.app.subscribers import erase_subscriber
    from bulletin.db import transaction

    _, token = pending(web)
    with transaction(web.engine) as session:
        erase_subscriber(session, "ines@example.org")
    assert web.client.get(f"/confirm/{token}").status_code == 400
