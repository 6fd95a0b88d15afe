"""``bulletin staff ...``: accounts for the staff pages."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from bulletin.app.staff import (
    add_staff,
    end_sessions,
    find_staff,
    get_staff,
    list_sessions,
    list_staff,
    parse_role,
    remove_staff,
    set_password,
)
from bulletin.cli import App, pass_app
from bulletin.errors import Conflict
from bulletin.models import StaffRole

ROLE_CHOICES = [role.value for role in StaffRole]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@click.group()
def staff() -> None:
    """Staff accounts that log in to the preview and approval pages."""


@staff.command("add")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLE_CHOICES), help="editor, approver or admin.")
@click.option("--email", help="Address for test sends to oneself.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_app
def staff_add(app: App, name: str, role: str, email: str | None, password_stdin: bool) -> None:
    """Create a staff account; asks for the password twice.

    Editors arrange editions, approvers also approve and schedule them, admins can do everything.

    Example:

        bulletin staff add marie --role approver --email marie@example.org
    """
    with app.reading() as session:
        if find_staff(session, name) is not None:
            raise Conflict(f"a staff member named {name.strip()!r} already exists")
    password = _read_password(password_stdin)
    with app.transaction() as session:
        member = add_staff(session, name, role=parse_role(role), password=password, email=email)
        click.echo(f"Added {member.name} ({member.role.value})")


@staff.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_app
def staff_password(app: App, name: str, password_stdin: bool) -> None:
    """Set a new password; the member's open sessions end.

    Example:

        bulletin staff password marie
    """
    with app.reading() as session:
        get_staff(session, name)  # before asking for a password nobody can use
    password = _read_password(password_stdin)
    with app.transaction() as session:
        member = set_password(session, name, password)
        click.echo(f"Password changed for {member.name}")


@staff.command("list")
@pass_app
def staff_list(app: App) -> None:
    """List staff accounts with their role and email.

    Example:

        bulletin staff list
    """
    with app.reading() as session:
        members = list_staff(session)
        if not members:
            click.echo("No staff accounts yet (add one with 'bulletin staff add NAME --role admin').")
        for member in members:
            click.echo(f"{member.name}\t{member.role.value}\t{member.email or '-'}")


@staff.command("remove")
@click.argument("name")
@pass_app
def staff_remove(app: App, name: str) -> None:
    """Delete a staff account; its logins stop working at once.

    Example:

        bulletin staff remove marie
    """
    with app.transaction() as session:
        remove_staff(session, name)
    click.echo(f"Removed {name}")


@staff.command("sessions")
@click.option("--end", "end_name", metavar="NAME", help="End every open login of this staff member.")
@pass_app
def staff_sessions(app: App, end_name: str | None) -> None:
    """List open staff logins, or end those of one member at once (a lost laptop, a shared computer).

    Example:

        bulletin staff sessions
        bulletin staff sessions --end marie
    """
    if end_name is not None:
        with app.transaction() as session:
            member = get_staff(session, end_name)
            count = end_sessions(session, member)
            name = member.name
        click.echo(f"Ended {count} login(s) of {name}")
        return
    max_age = timedelta(hours=app.settings.web.session_hours)
    with app.reading() as session:
        open_sessions = list_sessions(session, max_age=max_age)
    if not open_sessions:
        click.echo("No open staff logins.")
    for entry in open_sessions:
        started = entry.started.strftime("%Y-%m-%d %H:%M UTC")
        click.echo(f"{entry.name}\t{started}\t{entry.ip or '-'}\t{entry.user_agent or '-'}")


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(staff)
