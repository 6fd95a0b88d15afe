"""Security headers on every page, cookie flags, and error pages without tracebacks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from itsdangerous import TimestampSigner

from bulletin.models import SubscriberStatus
from bulletin.web.app import SESSION_COOKIE, session_secret

from .factories import migrated_engine
from .web_support import (
    WebEnv,
    add_subscriber_row,
    client_for,
    csrf_of,
    token_of,
    web_env,  # noqa: F401  (the web fixture)
    web_settings,
)


def public_paths(web: WebEnv) -> list[str]:
    subscriber_id = add_subscriber_row(web.engine, "h@example.org", status=SubscriberStatus.PENDING)
    return [
        "/",
        "/subscribe",
        "/subscribe/sent",
        "/confirm/" + token_of(web, "confirm", subscriber_id, "h@example.org"),
        "/preferences/" + token_of(web, "preferences", subscriber_id, "h@example.org"),
        "/unsubscribe/" + token_of(web, "unsubscribe", subscriber_id, "h@example.org"),
        "/unsubscribe/broken-token",
        "/no-such-page",
        "/staff/login",
    ]


def test_every_page_has_a_strict_policy_and_no_referrer(web: WebEnv) -> None:
    for path in public_paths(web):
        response = web.client.get(path)
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy, path
        assert "script-src" not in policy, path
        assert "frame-ancestors 'none'" in policy, path
        assert response.headers["referrer-policy"] == "no-referrer", path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["cache-control"] == "no-store", path
        assert "<script" not in response.text, path


def test_cookies_are_httponly_samesite_and_not_secure_on_plain_http(web: WebEnv) -> None:
    cookie = web.client.get("/subscribe").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie
    assert "strict-transport-security" not in web.client.get("/subscribe").headers


def test_cookies_are_secure_and_hsts_sent_when_the_site_is_https(tmp_path: Path) -> None:
    settings = web_settings(tmp_path, base_url="https://news.example.org")
    engine = migrated_engine(settings)
    client = client_for(settings, engine)
    response = client.get("/subscribe")
    cookie = response.headers["set-cookie"].lower()
    assert "; secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert response.headers["strict-transport-security"].startswith("max-age=")
    engine.dispose()


def test_a_page_without_a_form_sets_no_cookie(web: WebEnv) -> None:
    assert "set-cookie" not in web.client.get("/subscribe/sent").headers


def test_tampered_session_cookie_is_ignored(web: WebEnv) -> None:
    # A session holding exactly the CSRF token the form will submit: only its signature decides.
    csrf = "c" * 43
    payload = base64.b64encode(json.dumps({"csrf": csrf}).encode())
    signed = TimestampSigner(session_secret(web.settings)).sign(payload).decode()
    forged = signed[: signed.rindex(".") + 1] + "forged-signature"
    form = {"email": "t@example.org", "language": "fr", "csrf_token": csrf}
    # The control: signed with the site's key, this session is accepted...
    genuine = client_for(web.settings, web.engine)
    genuine.cookies.set(SESSION_COOKIE, signed)
    assert genuine.post("/subscribe", data=form).status_code == 303
    # ...and with a forged signature the same session is ignored, so its token does not match.
    tampered = client_for(web.settings, web.engine)
    tampered.cookies.set(SESSION_COOKIE, forged)
    assert tampered.post("/subscribe", data=form).status_code == 403


def test_not_found_and_wrong_method_pages_are_clear(web: WebEnv) -> None:
    missing = web.client.get("/nothing/here", headers={"accept-language": "es"})
    assert missing.status_code == 404 and "Página no encontrada" in missing.text
    wrong = web.client.delete("/subscribe", headers={"accept-language": "en"})
    assert wrong.status_code == 405 and "This page cannot be used this way." in wrong.text


def test_oversized_form_is_refused(web: WebEnv) -> None:
    page = web.client.get("/subscribe")
    response = web.client.post(
        "/subscribe", data={"email": "big@example.org", "name": "x" * 400_000, "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 413
    assert "Traceback" not in response.text


def test_stylesheet_is_served_and_may_be_cached(web: WebEnv) -> None:
    response = web.client.get("/static/style.css")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")
    assert "cache-control" not in response.headers or response.headers["cache-control"] != "no-store"
    assert ":focus-visible" in response.text
