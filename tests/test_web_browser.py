"""The pages in a real Chromium (Playwright), served by uvicorn, with a real SMTP server.

Screenshots of every page at phone (375 px) and desktop (1280 px) width are written to
tests/artifacts/screenshots/ for people to look at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from bulletin.compose.approval import approve
from bulletin.compose.preview import CHROMIUM_ARGS
from bulletin.config import Settings
from bulletin.models import StaffRole, SubscriberStatus
from bulletin.mta.sender import send_edition

from .factories import migrated_engine
from .smtp_server import RecordingSMTPServer, free_port
from .web_support import (
    ServerThread,
    add_news,
    add_staff_member,
    add_subscriber_row,
    make_edition,
    received_links,
    subscriber_state,
    web_settings,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent / "artifacts" / "screenshots"
WIDTHS = {"phone": 375, "desktop": 1280}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium')")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Live:
    url: str
    settings: Settings
    engine: Engine
    smtp: RecordingSMTPServer


@pytest.fixture
def live(tmp_path: Path, smtp_server: RecordingSMTPServer) -> Iterator[Live]:
    port = free_port()
    settings = web_settings(tmp_path, base_url=f"http://127.0.0.1:{port}", smtp_port=smtp_server.port)
    engine = migrated_engine(settings)
    server = ServerThread(settings, engine, port)
    server.start()
    try:
        yield Live(f"http://127.0.0.1:{port}", settings, engine, smtp_server)
    finally:
        server.stop()
        engine.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": WIDTHS["desktop"], "height": 900}, locale="en-GB")
    page = context.new_page()
    yield page
    context.close()


def shoot(page: Any, name: str) -> None:
    """Save the page at phone and desktop width, then go back to desktop width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        # Nothing may be wider than the screen on a phone, except the staff preview frames.
        if label == "phone" and not name.startswith("staff-edition"):
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{name} scrolls sideways on a phone"
    page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})
    # After a full-page screenshot of a scrolled page, Chromium may drop the next click; start from the top.
    page.evaluate("window.scrollTo(0, 0)")


def test_subscribe_confirm_by_email_then_change_preferences(page: Any, live: Live) -> None:
    page.goto(live.url + "/subscribe?lang=es")
    assert page.locator("html").get_attribute("lang") == "es"
    shoot(page, "subscribe")
    # The keyboard alone fills in and sends the form.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.get_by_label("Correo electrónico").fill("lucia@example.org")
    page.get_by_label("Nombre").fill("Lucía")
    page.get_by_label("Juventud").check()
    page.get_by_label("Seguridad urbana").check()
    page.get_by_label("Correo electrónico").press("Enter")
    page.wait_for_url("**/subscribe/sent")
    assert "lucia@example.org" in page.content()
    shoot(page, "subscribe-sent")

    live.smtp.wait_for(1)
    message = live.smtp.messages[0].parse()
    assert message["Subject"] == "Confirme su suscripción a Prevention News"
    assert message["Auto-Submitted"] == "auto-generated"
    confirm_link = next(link for link in received_links(live.smtp) if "/confirm/" in link)

    page.goto(confirm_link)
    shoot(page, "confirm")
    subscriber = subscriber_state(live.engine, "lucia@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING
    page.get_by_role("button", name="Confirmar mi suscripción").click()
    page.wait_for_selector("text=Gracias, su suscripción está confirmada")
    shoot(page, "confirmed")
    subscriber = subscriber_state(live.engine, "lucia@example.org")
    assert subscriber is not None
    assert subscriber.status == SubscriberStatus.ACTIVE
    assert subscriber.consent_ip == "127.0.0.1"
    assert subscriber.consent_user_agent and "Chrome" in subscriber.consent_user_agent
    assert (subscriber.language, subscriber.interests) == ("es", "cities,youth")

    page.get_by_role("link", name="Cambiar el idioma o los temas").click()
    shoot(page, "preferences")
    page.get_by_label("English").check()
    page.get_by_label("Juventud").uncheck()
    page.get_by_role("button", name="Guardar mis preferencias").click()
    page.wait_for_selector("text=Your preferences are saved.")
    subscriber = subscriber_state(live.engine, "lucia@example.org")
    assert subscriber is not None and (subscriber.language, subscriber.interests) == ("en", "cities")


def test_expired_or_broken_link_page(page: Any, live: Live) -> None:
    page.goto(live.url + "/preferences/broken-link?lang=fr")
    assert "Ce lien n'est pas valide" in page.content().replace("&#39;", "'")
    shoot(page, "link-error")
    page.goto(live.url + "/no/such/page?lang=en")
    assert "Page not found" in page.content()
    shoot(page, "not-found")


def sent_bulletins(live: Live) -> list[Any]:
    """Send a real edition to the active subscribers through the sender; return the received messages."""

    add_news(live.engine)
    edition_id = make_edition(live.engine, live.settings)
    approve(live.engine, live.settings, edition_id, "test-approver")
    outcome = send_edition(live.engine, live.settings, edition_id, actor="test", worker="browser-test")
    assert outcome.started, outcome.refused
    return [message.parse() for message in live.smtp.wait_for(2)]


def unsubscribe_url(message: Any) -> str:
    header = str(message["List-Unsubscribe"])
    match = re.search(r"<(https?://[^>]+)>", header)
    assert match, header
    return match.group(1)


def test_one_click_unsubscribe_from_a_received_bulletin(page: Any, live: Live) -> None:
    add_subscriber_row(live.engine, "one@example.org", language="en")
    add_subscriber_row(live.engine, "two@example.org", language="fr")
    messages = {str(message["To"]): message for message in sent_bulletins(live)}
    one, two = messages["one@example.org"], messages["two@example.org"]
    assert one["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # The mailbox provider's one-click POST: no cookie, no token, answered 200 without redirect.
    response = httpx.post(
        unsubscribe_url(one),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == 200
    subscriber = subscriber_state(live.engine, "one@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED
    page.goto(unsubscribe_url(one))
    assert "You are not subscribed" in page.content()

    # The same link opened in a browser shows a button; only the button unsubscribes.
    page.goto(unsubscribe_url(two))
    shoot(page, "unsubscribe")
    subscriber = subscriber_state(live.engine, "two@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE
    page.get_by_role("button", name="Me désabonner").click()
    page.wait_for_selector("text=Vous êtes désabonné·e")
    shoot(page, "unsubscribed")
    subscriber = subscriber_state(live.engine, "two@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED


def test_staff_login_preview_grid_and_approve(page: Any, live: Live) -> None:
    add_subscriber_row(live.engine, "fr@example.org", language="fr")
    add_subscriber_row(live.engine, "en@example.org", language="en", interests="youth")
    add_news(live.engine)
    edition_id = make_edition(live.engine, live.settings)
    add_staff_member(live.engine, "april", StaffRole.APPROVER, email="april@example.org")

    page.goto(live.url + f"/staff/editions/{edition_id}")
    assert "/staff/login?next=" in page.url
    shoot(page, "staff-login")
    page.get_by_label("Name").fill("april")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/staff/editions/{edition_id}")

    frames = page.locator("iframe.preview")
    assert frames.count() == 4
    widths = sorted(round(frames.nth(i).bounding_box()["width"]) for i in range(4))
    assert widths == [375, 375, 600, 600]
    # The first frame (English, youth) shows the rendered email with its youth story.
    page.locator("iframe.w600").first.scroll_into_view_if_needed()
    frame = page.frame_locator("iframe.w600").first
    frame.get_by_text("Preventing bullying at school").filter(visible=True).first.wait_for(timeout=10_000)
    assert frame.get_by_text("Safer neighbourhoods thanks to residents").count() == 0
    shoot(page, "staff-edition")

    with page.expect_navigation():
        page.get_by_role("button", name="Approve every variant").click()
    notices = page.locator(".notice").all_inner_texts()
    assert "Your approval is recorded." in notices, notices
    assert "approved" in page.locator(".status").first.inner_text()
    shoot(page, "staff-edition-approved")

    page.goto(live.url + "/staff/")
    shoot(page, "staff-editions")
    page.goto(live.url + f"/staff/editions/{edition_id}/progress")
    shoot(page, "staff-progress")
