"""Staff accounts: argon2 hashes, roles, and the ``bulletin staff`` commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from bulletin.app.staff import (
    MAX_LOGIN_DELAY,
    Forbidden,
    add_staff,
    authenticate,
    has_role,
    login_delay,
    remove_staff,
    require_role,
)
from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import Conflict, InvalidInput, NotFound
from bulletin.models import StaffMember, StaffRole


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "bulletin.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "staff.db"}"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(path), "db", "upgrade"])
    assert result.exit_code == 0, result.output
    return path


def run(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), "staff", *args], input=input)


def test_passwords_are_stored_as_argon2_hashes(settings: Settings, engine: Engine) -> None:
    with transaction(engine) as session:
        add_staff(session, "marie", role=StaffRole.APPROVER, password="a long secret phrase")
    with reading(engine) as session:
        member = session.scalars(select(StaffMember)).one()
    assert member.password_hash.startswith("$argon2id$")
    assert "a long secret phrase" not in member.password_hash


@pytest.mark.slow
def test_authenticate_checks_the_password_and_throttles(settings: Settings, engine: Engine) -> None:
    with transaction(engine) as session:
        add_staff(session, "marie", role=StaffRole.EDITOR, password="a long secret phrase")
    with transaction(engine) as session:
        assert authenticate(session, settings, "marie", "a long secret phrase", ip="10.0.0.1").member is not None
        assert authenticate(session, settings, "MARIE", "a long secret phrase", ip="10.0.0.1").member is not None
        assert authenticate(session, settings, "marie", "wrong", ip="10.0.0.1").member is None
        assert authenticate(session, settings, "nobody", "wrong", ip="10.0.0.1").member is None
    for _ in range(settings.web.login_attempts):
        with transaction(engine) as session:
            authenticate(session, settings, "marie", "wrong", ip="10.0.0.2")
    with transaction(engine) as session:
        # The address that failed is refused, even with the right password.
        result = authenticate(session, settings, "marie", "a long secret phrase", ip="10.0.0.2")
        assert result.throttled and result.member is None


def test_an_attacker_slows_the_account_down_but_never_locks_its_owner_out(settings: Settings, engine: Engine) -> None:
    """Failures from many addresses (finding 7: five wrong passwords locked the owner out for 15 minutes)."""
    with transaction(engine) as session:
        add_staff(session, "marie", role=StaffRole.EDITOR, password="a long secret phrase")
    delays = []
    for attempt in range(settings.web.login_attempts + 8):
        with transaction(engine) as session:
            delays.append(login_delay(session, settings, "marie"))
            authenticate(session, settings, "marie", "wrong", ip=f"198.51.100.{attempt}")
    assert delays[: settings.web.login_attempts] == [0.0] * settings.web.login_attempts
    growing = delays[settings.web.login_attempts :]
    assert growing[:3] == [1.0, 2.0, 4.0] and max(growing) == MAX_LOGIN_DELAY
    with transaction(engine) as session:
        result = authenticate(session, settings, "marie", "a long secret phrase", ip="192.0.2.10")
        assert not result.throttled and result.member is not None
    # A success clears the account's failures: no more waiting.
    with transaction(engine) as session:
        assert login_delay(session, settings, "marie") == 0.0


def test_roles_are_ranked(settings: Settings, engine: Engine) -> None:
    with transaction(engine) as session:
        editor = add_staff(session, "eddie", role=StaffRole.EDITOR, password="a long secret phrase")
        admin = add_staff(session, "ada", role=StaffRole.ADMIN, password="a long secret phrase")
        assert has_role(admin, StaffRole.APPROVER) and has_role(editor, StaffRole.EDITOR)
        assert not has_role(editor, StaffRole.APPROVER)
        with pytest.raises(Forbidden, match="approver"):
            require_role(editor, StaffRole.APPROVER)


@pytest.mark.parametrize(
    ("name", "password", "error"),
    [
        ("marie", "short", InvalidInput),
        ("two words", "a long secret phrase", InvalidInput),
        ("", "a long secret phrase", InvalidInput),
    ],
)
def test_bad_accounts_are_refused(engine: Engine, name: str, password: str, error: type[Exception]) -> None:
    with pytest.raises(error), transaction(engine) as session:
        add_staff(session, name, role=StaffRole.EDITOR, password=password)


def test_names_are_unique_and_removal_needs_an_existing_name(engine: Engine) -> None:
    with transaction(engine) as session:
        add_staff(session, "marie", role=StaffRole.EDITOR, password="a long secret phrase")
    with pytest.raises(Conflict), transaction(engine) as session:
        add_staff(session, "Marie", role=StaffRole.EDITOR, password="a long secret phrase")
    with pytest.raises(NotFound), transaction(engine) as session:
        remove_staff(session, "paul")


def test_cli_add_asks_the_password_twice(config: Path) -> None:
    result = run(
        config,
        "add",
        "marie",
        "--role",
        "approver",
        "--email",
        "marie@example.org",
        input="a long secret phrase\na long secret phrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "Added marie (approver)" in result.output
    listed = run(config, "list")
    assert listed.output.strip() == "marie\tapprover\tmarie@example.org"


def test_cli_add_refuses_mismatched_confirmation(config: Path) -> None:
    result = run(config, "add", "marie", "--role", "editor", input="a long secret phrase\nsomething else\n\n")
    assert result.exit_code != 0
    assert "Added" not in result.output


def test_cli_password_from_stdin_and_errors_are_one_line(config: Path) -> None:
    ok = run(config, "add", "paul", "--role", "editor", "--password-stdin", input="another long phrase\n")
    assert ok.exit_code == 0, ok.output
    short = run(config, "add", "lea", "--role", "editor", "--password-stdin", input="short\n")
    assert short.exit_code == 1
    assert short.output.strip() == "Error: the password must have at least 10 characters"
    duplicate = run(config, "add", "paul", "--role", "admin", "--password-stdin", input="another long phrase\n")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    bad_role = run(config, "add", "zoe", "--role", "boss", "--password-stdin", input="another long phrase\n")
    assert bad_role.exit_code == 2 and "boss" in bad_role.output
    bad_email = run(
        config, "add", "zoe", "--role", "editor", "--email", "not-an-address", "--password-stdin", input="x" * 12
    )
    assert bad_email.exit_code == 1 and "Traceback" not in bad_email.output


def test_cli_remove_and_password(config: Path) -> None:
    run(config, "add", "paul", "--role", "editor", "--password-stdin", input="another long phrase\n")
    changed = run(config, "password", "paul", "--password-stdin", input="a brand new phrase\n")
    assert changed.exit_code == 0 and "Password changed for paul" in changed.output
    removed = run(config, "remove", "paul")
    assert removed.exit_code == 0 and "Removed paul" in removed.output
    again = run(config, "remove", "paul")
    assert again.exit_code == 1 and again.output.strip() == "Error: no staff member named 'paul'"
    assert "No staff accounts yet" in run(config, "list").output
