"""Unsubscribing: GET never acts, the page's button does, and RFC 8058 one-click works without a cookie."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from bulletin.db import reading
from bulletin.models import SubscriberEvent, SubscriberStatus

from .web_support import (
    WebEnv,
    add_subscriber_row,
    client_for,
    csrf_of,
    subscriber_state,
    tampered,
    token_of,
    web_env,  # noqa: F401  (the web fixture)
)

EMAIL = "olu@example.org"


def unsubscribe_path(web: WebEnv, status: SubscriberStatus = SubscriberStatus.ACTIVE) -> str:
    subscriber_id = add_subscriber_row(web.engine, EMAIL, status=status, language="en")
    return "/unsubscribe/" + token_of(web, "unsubscribe", subscriber_id, EMAIL)


def status_of(web: WebEnv) -> SubscriberStatus:
    subscriber = subscriber_state(web.engine, EMAIL)
    assert subscriber is not None
    return subscriber.status


def test_opening_the_link_only_shows_a_button(web: WebEnv) -> None:
    path = unsubscribe_path(web)
    for _ in range(3):
        page = web.client.get(path)
        assert page.status_code == 200
    assert "Unsubscribe from Prevention News" in page.text and '<button type="submit"' in page.text
    assert status_of(web) == SubscriberStatus.ACTIVE


def test_the_button_unsubscribes(web: WebEnv) -> None:
    path = unsubscribe_path(web)
    response = web.client.post(path, data={"csrf_token": csrf_of(web.client.get(path).text)})
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert status_of(web) == SubscriberStatus.UNSUBSCRIBED


def test_the_button_needs_the_csrf_token(web: WebEnv) -> None:
    path = unsubscribe_path(web)
    web.client.get(path)
    assert web.client.post(path, data={}).status_code == 403
    assert web.client.post(path, data={"csrf_token": "x" * 43}).status_code == 403
    assert status_of(web) == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_without_cookie_unsubscribes_at_once(web: WebEnv, encoding: str) -> None:
    path = unsubscribe_path(web)
    # A mailbox provider: a fresh client with no cookie, no CSRF token, no login.
    provider = client_for(web.settings, web.engine)
    if encoding == "urlencoded":
        response = provider.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    else:
        response = provider.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers
    assert status_of(web) == SubscriberStatus.UNSUBSCRIBED
    with reading(web.engine) as session:
        event = session.scalars(select(SubscriberEvent).where(SubscriberEvent.new_status == "unsubscribed")).one()
    assert event.detail is not None and "one-click" in event.detail


def test_one_click_twice_is_still_200(web: WebEnv) -> None:
    path = unsubscribe_path(web)
    for _ in range(2):
        response = web.client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
    assert status_of(web) == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize("damage", ["tampered", "truncated", "empty-ish"])
def test_one_click_with_a_bad_token_changes_nothing(web: WebEnv, damage: str) -> None:
    path = unsubscribe_path(web)
    token = path.rsplit("/", 1)[1]
    bad = {"tampered": tampered(token), "truncated": token[:10], "empty-ish": "x"}[damage]
    response = web.client.post(
        "/unsubscribe/" + bad, data={"List-Unsubscribe": "One-Click"}, headers={"accept-language": "en"}
    )
    assert response.status_code == 400
    assert "This link is not valid" in response.text
    assert status_of(web) == SubscriberStatus.ACTIVE


def test_preferences_token_cannot_unsubscribe(web: WebEnv) -> None:
    subscriber_id = add_subscriber_row(web.engine, EMAIL)
    token = token_of(web, "preferences", subscriber_id, EMAIL)
    response = web.client.post("/unsubscribe/" + token, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400
    assert status_of(web) == SubscriberStatus.ACTIVE


def test_already_unsubscribed_page_offers_to_come_back(web: WebEnv) -> None:
    path = unsubscribe_path(web, SubscriberStatus.UNSUBSCRIBED)
    page = web.client.get(path)
    assert "You are not subscribed" in page.text and "/preferences/" in page.text


def test_works_over_a_real_socket_with_plain_httpx(web: WebEnv) -> None:
    """The one-click request as a mailbox provider's server sends it, through httpx's own transport."""
    path = unsubscribe_path(web)
    transport = httpx.ASGITransport(app=web.client.app)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.post(path, data={"List-Unsubscribe": "One-Click"})

    import asyncio

    response = asyncio.run(post())
    assert response.status_code == 200
    assert status_of(web) == SubscriberStatus.UNSUBSCRIBED
