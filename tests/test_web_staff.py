"""Staff pages: login and its throttle, roles enforced on the server, preview grid, approve, schedule, tests."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bulletin.app.editions import story_edits
from bulletin.app.staff import set_password
from bulletin.db import reading, transaction
from bulletin.models import (
    Approval,
    Delivery,
    DeliveryState,
    Edition,
    EditionItem,
    EditionStatus,
    EditionVariant,
    NewsItem,
    StaffRole,
    utcnow,
)

from .factories import RenderWatch, migrated_engine
from .smtp_server import RecordingSMTPServer
from .web_support import (
    PASSWORD,
    WebEnv,
    add_news,
    add_staff_member,
    add_subscriber_row,
    client_for,
    csrf_of,
    log_in,
    make_edition,
    staff_csrf,
    web_settings,
)

STAFF = {
    "eddie": StaffRole.EDITOR,
    "april": StaffRole.APPROVER,
    "ada": StaffRole.ADMIN,
}


@pytest.fixture(scope="module")
def edition_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A database with subscribers, news, staff and one rendered edition in review, built once."""
    import os

    os.environ.setdefault("BULLETIN_SECRET_KEY", "test-secret-key-0123456789abcdef")
    folder = tmp_path_factory.mktemp("staff-db")
    settings = web_settings(folder)
    engine = migrated_engine(settings)
    add_subscriber_row(engine, "fr-all@example.org", language="fr")
    add_subscriber_row(engine, "fr-all-2@example.org", language="fr")
    add_subscriber_row(engine, "en-youth@example.org", language="en", interests="youth")
    add_subscriber_row(engine, "es-all@example.org", language="es")
    add_news(engine)
    for name, role in STAFF.items():
        add_staff_member(engine, name, role, email=f"{name}@example.org")
    edition_id = make_edition(engine, settings)
    engine.dispose()
    return folder / "web.db", edition_id


@pytest.fixture
def web(tmp_path: Path, smtp_server: RecordingSMTPServer, edition_database: tuple[Path, int]) -> Iterator[WebEnv]:
    shutil.copy(edition_database[0], tmp_path / "web.db")
    settings = web_settings(tmp_path, smtp_port=smtp_server.port)
    engine = migrated_engine(settings)
    yield WebEnv(settings, engine, client_for(settings, engine), smtp_server)
    engine.dispose()


@pytest.fixture
def edition_id(edition_database: tuple[Path, int]) -> int:
    return edition_database[1]


def edition_status(web: WebEnv, edition_id: int) -> EditionStatus:
    with reading(web.engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition.status


def flashes(page: str) -> list[str]:
    return [
        unescape(text).strip() for text in re.findall(r'<div class="notice [a-z]+" role="status">([^<]*)</div>', page)
    ]


# ---------------------------------------------------------------------------
# Login


def test_staff_pages_need_a_login(web: WebEnv, edition_id: int) -> None:
    for path in ("/staff/", f"/staff/editions/{edition_id}", f"/staff/editions/{edition_id}/progress"):
        response = web.client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/staff/login?next=/staff/")
    response = web.client.post(f"/staff/editions/{edition_id}/approve", data={})
    assert response.status_code == 401
    assert edition_status(web, edition_id) == EditionStatus.REVIEW


def test_login_then_the_editions_list(web: WebEnv, edition_id: int) -> None:
    response = log_in(web.client, "april")
    assert response.status_code == 303 and response.headers["location"] == "/staff/"
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    page = web.client.get("/staff/", headers={"accept-language": "en"})
    assert page.status_code == 200
    assert f'href="/staff/editions/{edition_id}"' in page.text
    assert "in review" in page.text


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(web: WebEnv, edition_id: int) -> None:
    page = web.client.get(f"/staff/login?next=/staff/editions/{edition_id}")
    assert f'name="next" value="/staff/editions/{edition_id}"' in page.text
    csrf = csrf_of(page.text)
    response = web.client.post(
        "/staff/login", data={"name": "eddie", "password": PASSWORD, "csrf_token": csrf, "next": "//evil.example/x"}
    )
    assert response.headers["location"] == "/staff/"


def test_wrong_password_is_refused(web: WebEnv) -> None:
    response = log_in(web.client, "april", "wrong password!")
    assert response.status_code == 401
    assert "Nom ou mot de passe incorrect" in response.text
    assert web.client.get("/staff/").status_code == 303


def test_login_is_throttled_after_repeated_failures(web: WebEnv) -> None:
    for _ in range(web.settings.web.login_attempts):
        assert log_in(web.client, "april", "guess guess guess").status_code == 401
    # Even the right password is refused now, for this account.
    response = log_in(web.client, "april")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "900"
    assert "Trop de tentatives" in response.text
    # Another account from the same address still works (the per-address limit is higher).
    assert log_in(web.client, "eddie").status_code == 303


def test_login_needs_the_csrf_token(web: WebEnv) -> None:
    web.client.get("/staff/login")
    response = web.client.post("/staff/login", data={"name": "april", "password": PASSWORD})
    assert response.status_code == 403
    assert web.client.get("/staff/").status_code == 303


def test_logout_ends_the_session(web: WebEnv) -> None:
    log_in(web.client, "april")
    csrf = staff_csrf(web.client)
    web.client.post("/staff/logout", data={"csrf_token": csrf})
    assert web.client.get("/staff/").status_code == 303


def test_changing_the_password_or_removing_the_account_ends_logins(web: WebEnv) -> None:
    log_in(web.client, "april")
    assert web.client.get("/staff/").status_code == 200
    with transaction(web.engine) as session:
        set_password(session, "april", "another long password")
    assert web.client.get("/staff/").status_code == 303

    log_in(web.client, "eddie")
    assert web.client.get("/staff/").status_code == 200
    from bulletin.app.staff import remove_staff

    with transaction(web.engine) as session:
        remove_staff(session, "eddie")
    assert web.client.get("/staff/").status_code == 303


def test_staff_pages_may_not_be_framed(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "april")
    for path in ("/staff/login", "/staff/", f"/staff/editions/{edition_id}"):
        response = web.client.get(path)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"


# ---------------------------------------------------------------------------
# Preview grid


def test_preview_grid_shows_every_variant_at_two_widths_with_audience_and_size(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "eddie")
    page = web.client.get(f"/staff/editions/{edition_id}", headers={"accept-language": "en"})
    assert page.status_code == 200
    with reading(web.engine) as session:
        variants = session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition_id)).all()
    assert {(v.language, v.interests) for v in variants} == {("fr", ""), ("en", "youth"), ("es", "")}
    for variant in variants:
        src = f"/staff/editions/{edition_id}/variants/{variant.id}/html"
        assert page.text.count(f'src="{src}"') == 2
        assert f"{variant.html_size / 1024:.1f} KiB" in page.text
    assert re.search(r'class="preview w600"', page.text) and re.search(r'class="preview w375"', page.text)
    # Two French subscribers receive the French variant for every topic.
    french = re.search(r"Français · all topics</h3>.*?<dt>Subscribers</dt><dd>(\d+)</dd>", page.text, re.S)
    assert french is not None and french.group(1) == "2"
    assert "frame-src 'self'" in page.headers["content-security-policy"]


def test_variant_frame_serves_the_email_with_sample_links(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "eddie")
    with reading(web.engine) as session:
        variant = session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition_id)).first()
        assert variant is not None
    frame = web.client.get(f"/staff/editions/{edition_id}/variants/{variant.id}/html")
    assert frame.status_code == 200
    assert "__BULLETIN_" not in frame.text
    assert "frame-ancestors 'self'" in frame.headers["content-security-policy"]
    assert "script-src" not in frame.headers["content-security-policy"]
    text = web.client.get(f"/staff/editions/{edition_id}/variants/{variant.id}/text")
    assert text.headers["content-type"].startswith("text/plain") and "__BULLETIN_" not in text.text
    assert web.client.get(f"/staff/editions/{edition_id + 1}/variants/{variant.id}/html").status_code == 404


def test_frames_are_for_staff_only(web: WebEnv, edition_id: int) -> None:
    response = web.client.get(f"/staff/editions/{edition_id}/variants/1/html")
    assert response.status_code == 303


def test_unknown_edition_is_a_clear_404(web: WebEnv) -> None:
    log_in(web.client, "eddie")
    response = web.client.get("/staff/editions/999", headers={"accept-language": "en"})
    assert response.status_code == 404
    assert "no edition 999" in response.text
    assert "Traceback" not in response.text


# ---------------------------------------------------------------------------
# Roles


def test_editor_cannot_approve_schedule_or_cancel(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "eddie")
    csrf = staff_csrf(web.client)
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert f'action="/staff/editions/{edition_id}/approve"' not in page
    for path, data in (
        ("approve", {}),
        ("schedule", {"at": "2030-01-01T09:00"}),
        ("status", {"action": "cancel"}),
    ):
        response = web.client.post(f"/staff/editions/{edition_id}/{path}", data={"csrf_token": csrf, **data})
        assert response.status_code == 403, path
        assert "approver" in response.text
    assert edition_status(web, edition_id) == EditionStatus.REVIEW
    with reading(web.engine) as session:
        assert session.scalars(select(Approval)).all() == []


def test_approver_approves_and_the_approval_is_locked_to_the_variants(web: WebEnv, edition_id: int) -> None:
    web.client.headers["accept-language"] = "en"
    log_in(web.client, "april")
    csrf = staff_csrf(web.client)
    response = web.client.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert edition_status(web, edition_id) == EditionStatus.APPROVED
    with reading(web.engine) as session:
        approval = session.scalars(select(Approval)).one()
        hashes = {f"{v.language}|{v.interests}": v.content_hash for v in session.scalars(select(EditionVariant))}
    assert approval.approver == "april" and approval.variant_hashes == hashes
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert "Your approval is recorded." in flashes(page)
    # Approving again is refused with the workflow's one line.
    web.client.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": csrf})
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert any("already approved" in message for message in flashes(page))


def test_approval_needs_the_csrf_token(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "april")
    response = web.client.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": "forged"})
    assert response.status_code == 403
    assert edition_status(web, edition_id) == EditionStatus.REVIEW


def test_two_approvals_needed_means_two_people(
    tmp_path: Path, smtp_server: RecordingSMTPServer, edition_database: tuple[Path, int]
) -> None:
    shutil.copy(edition_database[0], tmp_path / "web.db")
    settings = web_settings(tmp_path, smtp_port=smtp_server.port, workflow={"approvals_required": 2})
    engine = migrated_engine(settings)
    edition_id = edition_database[1]
    for name in ("april", "ada"):
        client = client_for(settings, engine)
        log_in(client, name)
        client.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": staff_csrf(client)})
        with reading(engine) as session:
            status = session.get(Edition, edition_id).status  # type: ignore[union-attr]
        assert status == (EditionStatus.REVIEW if name == "april" else EditionStatus.APPROVED)
    engine.dispose()


# ---------------------------------------------------------------------------
# Editing


def story_order(web: WebEnv, edition_id: int) -> list[int]:
    with reading(web.engine) as session:
        return list(
            session.scalars(
                select(EditionItem.news_item_id)
                .where(EditionItem.edition_id == edition_id)
                .order_by(EditionItem.position, EditionItem.news_item_id)
            )
        )


def test_editor_moves_a_story_down_and_the_previews_follow(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "eddie")
    before = story_order(web, edition_id)
    first = before[0]
    with reading(web.engine) as session:
        hashes_before = {v.id: v.content_hash for v in session.scalars(select(EditionVariant))}
    response = web.client.post(
        f"/staff/editions/{edition_id}/items",
        data={"csrf_token": staff_csrf(web.client), "news_item_id": str(first), "action": "down"},
    )
    assert response.status_code == 303
    after = story_order(web, edition_id)
    assert after != before and after.index(first) > before.index(first)
    with reading(web.engine) as session:
        hashes_after = {v.id: v.content_hash for v in session.scalars(select(EditionVariant))}
    assert hashes_after != hashes_before


def test_editor_excludes_then_includes_a_version(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "eddie")
    item = story_order(web, edition_id)[-1]
    csrf = staff_csrf(web.client)
    web.client.post(
        f"/staff/editions/{edition_id}/items", data={"csrf_token": csrf, "news_item_id": str(item), "action": "exclude"}
    )
    with reading(web.engine) as session:
        entry = session.get(EditionItem, (edition_id, item))
        assert entry is not None and entry.excluded
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert "<del>" in page
    web.client.post(
        f"/staff/editions/{edition_id}/items", data={"csrf_token": csrf, "news_item_id": str(item), "action": "include"}
    )
    with reading(web.engine) as session:
        entry = session.get(EditionItem, (edition_id, item))
        assert entry is not None and not entry.excluded


def test_changing_an_approved_edition_voids_its_approval(web: WebEnv, edition_id: int) -> None:
    approver = client_for(web.settings, web.engine)
    log_in(approver, "april")
    approver.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": staff_csrf(approver)})
    assert edition_status(web, edition_id) == EditionStatus.APPROVED
    log_in(web.client, "eddie")
    first = story_order(web, edition_id)[0]
    web.client.post(
        f"/staff/editions/{edition_id}/items",
        data={"csrf_token": staff_csrf(web.client), "news_item_id": str(first), "action": "down"},
    )
    assert edition_status(web, edition_id) == EditionStatus.REVIEW
    with reading(web.engine) as session:
        approval = session.scalars(select(Approval)).one()
    assert approval.voided_at is not None


def test_bad_arrangement_requests_are_refused_with_one_line(web: WebEnv, edition_id: int) -> None:
    web.client.headers["accept-language"] = "en"
    log_in(web.client, "eddie")
    csrf = staff_csrf(web.client)
    first = story_order(web, edition_id)[0]
    web.client.post(
        f"/staff/editions/{edition_id}/items", data={"csrf_token": csrf, "news_item_id": "99999", "action": "exclude"}
    )
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert any("99999" in message for message in flashes(page))
    web.client.post(
        f"/staff/editions/{edition_id}/items", data={"csrf_token": csrf, "news_item_id": str(first), "action": "up"}
    )
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert "This story cannot move further." in flashes(page)


def test_editing_needs_the_csrf_token(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "eddie")
    before = story_order(web, edition_id)
    response = web.client.post(
        f"/staff/editions/{edition_id}/items", data={"news_item_id": str(before[0]), "action": "down"}
    )
    assert response.status_code == 403
    assert story_order(web, edition_id) == before


# ---------------------------------------------------------------------------
# Schedule, test send, live counts


def test_approver_schedules_in_the_configured_time_zone(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "april")
    csrf = staff_csrf(web.client)
    web.client.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": csrf})
    zone = ZoneInfo(web.settings.schedule.timezone)
    local = (utcnow() + timedelta(days=2)).astimezone(zone).replace(second=0, microsecond=0, tzinfo=None)
    response = web.client.post(
        f"/staff/editions/{edition_id}/schedule", data={"csrf_token": csrf, "at": local.strftime("%Y-%m-%dT%H:%M")}
    )
    assert response.status_code == 303
    with reading(web.engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        assert edition.status == EditionStatus.SCHEDULED
        assert edition.scheduled_at == local.replace(tzinfo=zone)


def test_scheduling_in_the_past_is_refused(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "april")
    csrf = staff_csrf(web.client)
    web.client.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": csrf})
    web.client.post(f"/staff/editions/{edition_id}/schedule", data={"csrf_token": csrf, "at": "2001-01-01T09:00"})
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert any("in the past" in message for message in flashes(page))
    assert edition_status(web, edition_id) == EditionStatus.APPROVED


def test_test_send_goes_to_the_logged_in_staff_member_only(web: WebEnv, edition_id: int) -> None:
    web.client.headers["accept-language"] = "en"
    log_in(web.client, "eddie")
    page = web.client.get(f"/staff/editions/{edition_id}").text
    with reading(web.engine) as session:
        english = session.scalars(select(EditionVariant).where(EditionVariant.language == "en")).one()
    web.client.post(
        f"/staff/editions/{edition_id}/test-send", data={"csrf_token": csrf_of(page), "variant": str(english.id)}
    )
    messages = web.smtp.wait_for(1)
    assert len(messages) == 1 and messages[0].recipients == ["eddie@example.org"]
    message = messages[0].parse()
    assert message["Subject"] == "[TEST] " + english.subject
    assert "__BULLETIN_" not in message.get_body(("html",)).get_content()
    with reading(web.engine) as session:
        assert session.scalars(select(Delivery)).all() == []
    assert edition_status(web, edition_id) == EditionStatus.REVIEW
    web.client.post(f"/staff/editions/{edition_id}/test-send", data={"csrf_token": csrf_of(page), "variant": "all"})
    assert len(web.smtp.wait_for(4)) == 4


def test_progress_page_shows_live_counts_and_refreshes_itself(web: WebEnv, edition_id: int) -> None:
    web.client.headers["accept-language"] = "en"
    with transaction(web.engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        edition.status = EditionStatus.SENDING
        variant = session.scalars(select(EditionVariant)).first()
        assert variant is not None
        from bulletin.models import Subscriber

        states = [DeliveryState.SENT, DeliveryState.SENT, DeliveryState.PENDING, DeliveryState.DEFERRED]
        for subscriber, state in zip(session.scalars(select(Subscriber).order_by(Subscriber.id)), states, strict=True):
            session.add(
                Delivery(
                    edition_id=edition_id,
                    subscriber_id=subscriber.id,
                    variant_id=variant.id,
                    state=state,
                    message_id=f"<{subscriber.id}@test>",
                )
            )
    log_in(web.client, "eddie")
    page = web.client.get(f"/staff/editions/{edition_id}/progress", headers={"accept-language": "en"})
    assert page.status_code == 200
    assert '<meta http-equiv="refresh" content="5">' in page.text
    assert "2 of 4 messages settled" in page.text
    counts = re.findall(r"<strong>(\d+)</strong>([^<]+)</div>", page.text)
    assert counts == [
        ("1", "waiting"),
        ("0", "being sent"),
        ("2", "sent"),
        ("1", "deferred, will retry"),
        ("0", "failed"),
        ("0", "skipped"),
    ]
    with transaction(web.engine) as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        edition.status = EditionStatus.SENT
    finished = web.client.get(f"/staff/editions/{edition_id}/progress")
    assert "http-equiv" not in finished.text


def test_status_changes_follow_the_workflow(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "eddie")
    csrf = staff_csrf(web.client)
    web.client.post(f"/staff/editions/{edition_id}/status", data={"csrf_token": csrf, "action": "reopen"})
    assert edition_status(web, edition_id) == EditionStatus.DRAFT
    web.client.post(f"/staff/editions/{edition_id}/status", data={"csrf_token": csrf, "action": "submit"})
    assert edition_status(web, edition_id) == EditionStatus.REVIEW
    # An editor may not cancel.
    assert (
        web.client.post(
            f"/staff/editions/{edition_id}/status", data={"csrf_token": csrf, "action": "cancel"}
        ).status_code
        == 403
    )
    admin = client_for(web.settings, web.engine)
    log_in(admin, "ada")
    csrf = staff_csrf(admin)
    admin.post(f"/staff/editions/{edition_id}/status", data={"csrf_token": csrf, "action": "cancel"})
    assert edition_status(web, edition_id) == EditionStatus.CANCELLED
    admin.post(f"/staff/editions/{edition_id}/status", data={"csrf_token": csrf, "action": "submit"})
    page = admin.get(f"/staff/editions/{edition_id}").text
    assert any("cancelled" in message for message in flashes(page))


# ---------------------------------------------------------------------------
# A refused schedule keeps the void it found; refusals word their next step for the web


def test_scheduling_an_edition_whose_content_changed_records_the_void_and_refuses(web: WebEnv, edition_id: int) -> None:
    web.client.headers["accept-language"] = "en"
    log_in(web.client, "april")
    csrf = staff_csrf(web.client)
    web.client.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": csrf})
    assert edition_status(web, edition_id) == EditionStatus.APPROVED
    # A news item of the edition is corrected after the approval (outside the staff pages).
    with transaction(web.engine) as session:
        entry = session.scalars(select(EditionItem).where(EditionItem.edition_id == edition_id)).first()
        assert entry is not None
        item = session.get(NewsItem, entry.news_item_id)
        assert item is not None
        item.title = item.title + " (corrected)"
    when = (utcnow() + timedelta(days=2)).astimezone(ZoneInfo(web.settings.schedule.timezone))
    web.client.post(
        f"/staff/editions/{edition_id}/schedule", data={"csrf_token": csrf, "at": when.strftime("%Y-%m-%dT%H:%M")}
    )
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert any("back in review" in message and "changed since approval" in message for message in flashes(page))
    # What the page says is what the database holds: the void was committed, nothing was scheduled.
    assert edition_status(web, edition_id) == EditionStatus.REVIEW
    with reading(web.engine) as session:
        approval = session.scalars(select(Approval)).one()
        edition = session.get(Edition, edition_id)
        assert edition is not None and edition.scheduled_at is None
    assert approval.voided_at is not None and "changed since approval" in (approval.void_reason or "")


def test_refusals_on_the_staff_pages_name_buttons_not_commands(web: WebEnv, edition_id: int) -> None:
    web.client.headers["accept-language"] = "en"
    log_in(web.client, "april")
    csrf = staff_csrf(web.client)
    when = (utcnow() + timedelta(days=2)).astimezone(ZoneInfo(web.settings.schedule.timezone))
    web.client.post(
        f"/staff/editions/{edition_id}/schedule", data={"csrf_token": csrf, "at": when.strftime("%Y-%m-%dT%H:%M")}
    )
    web.client.post(f"/staff/editions/{edition_id}/schedule", data={"csrf_token": csrf, "at": "soon"})
    page = web.client.get(f"/staff/editions/{edition_id}").text
    messages = flashes(page)
    assert any("it needs approval first" in m and "“Approve every variant”" in m for m in messages), messages
    assert any("send time 'soon'" in m and "such as 2026-12-01 09:00" in m for m in messages), messages
    assert not any("bulletin edition" in m or "--" in m for m in messages), messages
    # In French, the hint is French too.
    web.client.headers["accept-language"] = "fr"
    web.client.post(f"/staff/editions/{edition_id}/schedule", data={"csrf_token": csrf, "at": "soon"})
    page = web.client.get(f"/staff/editions/{edition_id}").text
    assert any("Indiquez une date et une heure" in m for m in flashes(page))


def test_a_story_edit_on_the_staff_pages_is_logged_with_its_author(web: WebEnv, edition_id: int) -> None:
    log_in(web.client, "eddie")
    first = story_order(web, edition_id)[0]
    web.client.post(
        f"/staff/editions/{edition_id}/items",
        data={"csrf_token": staff_csrf(web.client), "news_item_id": str(first), "action": "exclude"},
    )
    with reading(web.engine) as session:
        (edit,) = story_edits(session, edition_id)
    assert edit.actor == "eddie" and edit.reason == f"story edit: excluded news item {first}"
    assert edit.from_status == edit.to_status == "review"


def test_approving_and_editing_render_once_and_never_inside_a_write(
    web: WebEnv, edition_id: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with reading(web.engine) as session:
        variants = len(session.scalars(select(EditionVariant)).all())
    watch = RenderWatch(monkeypatch, tmp_path / "web.db")
    log_in(web.client, "april")
    web.client.post(f"/staff/editions/{edition_id}/approve", data={"csrf_token": staff_csrf(web.client)})
    assert edition_status(web, edition_id) == EditionStatus.APPROVED
    assert watch.renders == variants and watch.inside_writes == 0
    # A story edit of the approved edition: one rendering checks the approval and makes the previews.
    first = story_order(web, edition_id)[0]
    watch.renders = 0
    editor = client_for(web.settings, web.engine)
    log_in(editor, "eddie")
    editor.post(
        f"/staff/editions/{edition_id}/items",
        data={"csrf_token": staff_csrf(editor), "news_item_id": str(first), "action": "down"},
    )
    assert edition_status(web, edition_id) == EditionStatus.REVIEW
    assert watch.renders == variants and watch.inside_writes == 0
