"""The preferences page from the signed link: language, topics and name, leaving and coming back."""

from __future__ import annotations

from html import unescape

import pytest

from bulletin.models import SubscriberStatus

from .web_support import (
    WebEnv,
    add_subscriber_row,
    csrf_of,
    subscriber_state,
    tampered,
    token_of,
    web_env,  # noqa: F401  (the web fixture)
)

EMAIL = "maria@example.org"


def preferences_path(web: WebEnv, *, status: SubscriberStatus = SubscriberStatus.ACTIVE) -> str:
    subscriber_id = add_subscriber_row(web.engine, EMAIL, status=status, language="es", interests="youth", name="María")
    return "/preferences/" + token_of(web, "preferences", subscriber_id, EMAIL)


def test_page_shows_current_choices_in_the_subscriber_language(web: WebEnv) -> None:
    path = preferences_path(web)
    page = web.client.get(path, headers={"accept-language": "en"})
    assert page.status_code == 200
    assert '<html lang="es">' in page.text
    assert "Sus preferencias" in page.text
    assert 'value="youth" checked' in page.text
    assert 'value="cities">' in page.text
    assert 'value="es" checked' in page.text
    assert 'value="María"' in page.text


def test_switcher_overrides_the_subscriber_language(web: WebEnv) -> None:
    path = preferences_path(web)
    page = web.client.get(path + "?lang=fr")
    assert '<html lang="fr">' in page.text and "Vos préférences" in unescape(page.text)


def test_saving_changes_language_topics_and_name(web: WebEnv) -> None:
    path = preferences_path(web)
    csrf = csrf_of(web.client.get(path).text)
    response = web.client.post(
        path,
        data={
            "csrf_token": csrf,
            "action": "save",
            "language": "en",
            "interests": ["cities", "drugs"],
            "name": "Maria",
        },
    )
    assert response.status_code == 303 and response.headers["location"] == path
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None
    assert (subscriber.language, subscriber.interests, subscriber.name) == ("en", "cities,drugs", "Maria")
    page = web.client.get(path)
    assert '<html lang="en">' in page.text and "Your preferences are saved." in page.text


def test_ticking_no_topic_means_every_topic(web: WebEnv) -> None:
    path = preferences_path(web)
    csrf = csrf_of(web.client.get(path).text)
    web.client.post(path, data={"csrf_token": csrf, "action": "save", "language": "es", "name": ""})
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None and subscriber.interests == "" and subscriber.name is None


def test_unknown_language_or_topic_is_refused(web: WebEnv) -> None:
    path = preferences_path(web)
    csrf = csrf_of(web.client.get(path).text)
    response = web.client.post(path, data={"csrf_token": csrf, "action": "save", "language": "xx", "interests": "zzz"})
    assert response.status_code == 400
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None and (subscriber.language, subscriber.interests) == ("es", "youth")


def test_saving_without_csrf_changes_nothing(web: WebEnv) -> None:
    path = preferences_path(web)
    web.client.get(path)
    response = web.client.post(path, data={"action": "save", "language": "en"})
    assert response.status_code == 403
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None and subscriber.language == "es"


def test_unsubscribe_and_subscribe_again_from_the_page(web: WebEnv) -> None:
    path = preferences_path(web)
    csrf = csrf_of(web.client.get(path).text)
    left = web.client.post(path, data={"csrf_token": csrf, "action": "unsubscribe"})
    assert left.status_code == 200 and "Se ha dado de baja" in left.text
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED

    page = web.client.get(path)
    assert "Volver a suscribirse" in page.text
    back = web.client.post(path, data={"csrf_token": csrf, "action": "resubscribe"}, headers={"user-agent": "UA/2"})
    assert back.status_code == 303
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE
    assert subscriber.consent_user_agent == "UA/2"


def test_blocked_subscriber_cannot_resubscribe_from_the_page(web: WebEnv) -> None:
    path = preferences_path(web, status=SubscriberStatus.BLOCKED)
    csrf = csrf_of(web.client.get(path).text)
    web.client.post(path, data={"csrf_token": csrf, "action": "resubscribe"})
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None and subscriber.status == SubscriberStatus.BLOCKED


@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_bad_link_gets_a_clear_page_and_changes_nothing(web: WebEnv, damage: str) -> None:
    path = preferences_path(web)
    token = path.rsplit("/", 1)[1]
    bad = "/preferences/" + (tampered(token) if damage == "tampered" else token[:-6])
    page = web.client.get(bad)
    assert page.status_code == 400 and "Ce lien n'est pas valide" in unescape(page.text)
    csrf = csrf_of(web.client.get("/subscribe").text)
    response = web.client.post(bad, data={"csrf_token": csrf, "action": "unsubscribe"})
    assert response.status_code == 400
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE
