"""Staff logins (issue 13, findings 4 and 7): server-side sessions, a slow-down instead of a lockout, 404s."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bulletin.cli import cli
from bulletin.models import StaffRole

from .factories import write_config
from .web_support import (
    PASSWORD,
    TestClient,
    WebEnv,
    add_staff_member,
    client_for,
    log_in,
    staff_csrf,
    web_env,  # noqa: F401  (the web fixture)
)

SESSION_COOKIE = "bulletin_session"


def other_client(web: WebEnv, address: str = "testclient") -> TestClient:
    return client_for(web.settings, web.engine, address)


def run(web: WebEnv, tmp_path: Path, *args: str, stdin: str | None = None) -> str:
    config = write_config(tmp_path / "bulletin.toml", {"database": {"url": web.settings.database_url}})
    result = CliRunner().invoke(cli, ["--config", str(config), *args], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_cookie_captured_before_logout_no_longer_opens_the_staff_pages(web: WebEnv) -> None:
    """Finding 4: replaying the cookie after POST /staff/logout still opened /staff/."""
    add_staff_member(web.engine, "april", StaffRole.APPROVER)
    assert log_in(web.client, "april").status_code == 303
    captured = web.client.cookies[SESSION_COOKIE]
    web.client.post("/staff/logout", data={"csrf_token": staff_csrf(web.client)})

    attacker = other_client(web)
    attacker.cookies.set(SESSION_COOKIE, captured)
    response = attacker.get("/staff/")
    assert response.status_code == 303 and response.headers["location"].startswith("/staff/login")


def test_password_change_account_removal_and_the_cli_end_sessions(web: WebEnv, tmp_path: Path) -> None:
    add_staff_member(web.engine, "april", StaffRole.APPROVER)
    add_staff_member(web.engine, "eddie", StaffRole.EDITOR)
    eddie = other_client(web, "192.0.2.5")
    log_in(web.client, "april")
    log_in(eddie, "eddie")
    listed = run(web, tmp_path, "staff", "sessions")
    assert "april" in listed and "eddie\t" in listed and "192.0.2.5" in listed

    assert "Ended 1 login(s) of eddie" in run(web, tmp_path, "staff", "sessions", "--end", "eddie")
    assert eddie.get("/staff/").status_code == 303
    assert web.client.get("/staff/").status_code == 200

    run(web, tmp_path, "staff", "password", "april", "--password-stdin", stdin="another long password\n")
    assert web.client.get("/staff/").status_code == 303
    log_in(web.client, "april", "another long password")
    assert web.client.get("/staff/").status_code == 200
    run(web, tmp_path, "staff", "remove", "april")
    assert web.client.get("/staff/").status_code == 303
    assert "No open staff logins." in run(web, tmp_path, "staff", "sessions")


def test_an_attacker_cannot_lock_the_owner_out_of_the_web_login(web: WebEnv) -> None:
    """Finding 7: five wrong passwords from any address locked the owner out for 15 minutes."""
    add_staff_member(web.engine, "april", StaffRole.APPROVER)
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    attempts = web.settings.web.login_attempts + 3
    for number in range(attempts):
        attacker = other_client(web, f"203.0.113.{number}")
        attacker.app.state.sleep = record  # type: ignore[attr-defined]
        assert log_in(attacker, "april", "wrong password!").status_code == 401
    assert waits == [1.0, 2.0, 4.0]
    owner = other_client(web, "198.51.100.7")
    owner.app.state.sleep = record  # type: ignore[attr-defined]
    response = log_in(owner, "april", PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/staff/"
    assert waits[-1] == 8.0
    assert owner.get("/staff/").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/staff/editions/99999999999999999999",
        "/staff/editions/2147483648",
        "/staff/editions/1/variants/99999999999999999999/html",
        "/staff/editions/99999999999999999999/progress",
    ],
)
def test_ids_beyond_the_database_range_are_not_found(web: WebEnv, path: str) -> None:
    add_staff_member(web.engine, "april", StaffRole.APPROVER)
    log_in(web.client, "april")
    assert web.client.get(path).status_code == 404


def test_the_404_page_links_never_repeat_the_request_path(web: WebEnv) -> None:
    response = web.client.get("//evil.example/x")
    assert response.status_code == 404
    assert "evil.example" not in response.text
    assert 'href="/?lang=en"' in response.text
    page = web.client.get("/subscribe?lang=es")
    assert 'href="/subscribe?lang=fr"' in page.text
