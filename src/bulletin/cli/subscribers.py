"""``bulletin subscribers ...``: the admins' subscriber commands."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from bulletin.app.bounces import bounce_history
from bulletin.app.subscriber_files import ImportReport, default_report_path, export_to_file, import_csv, write_export
from bulletin.app.subscribers import (
    SubscriberFilter,
    add_subscriber,
    check_interests,
    check_language,
    erase_subscriber,
    get_subscriber,
    iter_subscribers,
    rotate_subscriber_links,
    set_status,
    subscriber_as_dict,
    subscriber_stats,
    update_subscriber,
)
from bulletin.cli import App, UserError, pass_app
from bulletin.models import SubscriberStatus
from bulletin.paths import Protected, check_input_file, check_output_file, shown

STATUS_CHOICE = click.Choice([s.value for s in SubscriberStatus])


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


@click.group()
def subscribers() -> None:
    """Add, change, list, import, export and erase subscribers."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", help="Display name used in the greeting.")
@click.option("--lang", "language", required=True, help="Language of the bulletin for this person.")
@click.option("--interest", "interests", multiple=True, help="Topic key; repeat for several. None means all.")
@click.option("--confirmed", is_flag=True, help="The person already confirmed: add as active, not pending.")
@pass_app
def add(app: App, email: str, name: str | None, language: str, interests: tuple[str, ...], confirmed: bool) -> None:
    """Add a subscriber (pending until confirmed, unless --confirmed).

    Example:

        bulletin subscribers add ana@example.org --name "Ana" --lang es --interest youth --confirmed
    """
    with app.transaction() as session:
        subscriber = add_subscriber(
            session,
            app.settings,
            email,
            name=name,
            language=language,
            interests=interests,
            confirmed=confirmed,
            source="cli",
            actor="cli:subscribers add",
        )
        click.echo(f"Added {subscriber.email} ({subscriber.status.value}, {subscriber.language})")


@subscribers.command("remove")
@click.argument("email")
@pass_app
def remove(app: App, email: str) -> None:
    """Unsubscribe someone; their history is kept (use 'erase' to delete it).

    Example:

        bulletin subscribers remove ana@example.org
    """
    with app.transaction() as session:
        subscriber = get_subscriber(session, email)
        changed = set_status(session, subscriber, SubscriberStatus.UNSUBSCRIBED, "cli:subscribers remove")
        click.echo(f"{'Unsubscribed' if changed else 'Already unsubscribed:'} {subscriber.email}")


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, email: str, as_json: bool) -> None:
    """Show a subscriber, their consent record and history.

    Example:

        bulletin subscribers show ana@example.org --json
    """
    with app.reading() as session:
        subscriber = get_subscriber(session, email)
        data = subscriber_as_dict(subscriber)
        events = [
            {
                "at": event.at.isoformat(),
                "action": event.action,
                "from": event.old_status,
                "to": event.new_status,
                "by": event.actor,
                "detail": event.detail,
            }
            for event in subscriber.events
        ]
        bounces = [
            {
                "at": record.received_at.isoformat(),
                "kind": record.kind.value,
                "status": record.status,
                "diagnostic": record.diagnostic,
                "edition": record.edition_id,
                "action": record.action,
            }
            for record in bounce_history(session, subscriber.id)
        ]
    if as_json:
        click.echo(json.dumps({**data, "events": events, "bounces": bounces}, ensure_ascii=False, indent=2))
        return
    console = _console()
    consent = data["consent"]
    assert isinstance(consent, dict)
    table = Table(show_header=False, box=None)
    for label, value in [
        ("Email", data["email"]),
        ("Name", data["name"] or "-"),
        ("Language", data["language"]),
        ("Interests", ", ".join(subscriber.interest_list) or "(all topics)"),
        ("Status", data["status"]),
        ("Consent", f"{consent['source']} at {consent['at']}"),
        ("Confirmed", consent["confirmed_at"] or "-"),
        ("From", " ".join(str(v) for v in (consent["ip"], consent["user_agent"]) if v) or "-"),
        ("Created", data["created_at"]),
    ]:
        table.add_row(f"[bold]{label}[/bold]", str(value))
    console.print(table)
    history = Table(title="History")
    for column in ("When", "Action", "Status", "By", "Detail"):
        history.add_column(column)
    for event in events:
        change = f"{event['from'] or ''} → {event['to']}" if event["to"] else ""
        history.add_row(str(event["at"])[:19], str(event["action"]), change, str(event["by"]), event["detail"] or "")
    console.print(history)
    if bounces:
        returned = Table(title="Bounces and complaints")
        for column in ("When", "Kind", "Status", "Edition", "Done", "Diagnostic"):
            returned.add_column(column)
        for row in bounces:
            returned.add_row(
                str(row["at"])[:19],
                str(row["kind"]),
                str(row["status"] or "-"),
                str(row["edition"] or "-"),
                str(row["action"]),
                str(row["diagnostic"] or ""),
            )
        console.print(returned)


@subscribers.command("set")
@click.argument("email")
@click.option("--lang", "language", help="New language.")
@click.option("--interest", "interests", multiple=True, help="Replace the topics; repeat for several.")
@click.option("--all-topics", is_flag=True, help="Clear the topics: receive every topic.")
@click.option("--name", help="New display name.")
@click.option("--status", type=STATUS_CHOICE, help="New status (recorded in the history).")
@pass_app
def set_(
    app: App,
    email: str,
    language: str | None,
    interests: tuple[str, ...],
    all_topics: bool,
    name: str | None,
    status: str | None,
) -> None:
    """Change a subscriber's language, topics, name or status.

    Example:

        bulletin subscribers set ana@example.org --lang fr --interest youth --interest cities
    """
    if interests and all_topics:
        raise click.UsageError("use either --interest or --all-topics, not both")
    with app.transaction() as session:
        subscriber = get_subscriber(session, email)
        new_interests: tuple[str, ...] | None = interests if interests else (() if all_topics else None)
        changes = update_subscriber(
            session,
            app.settings,
            subscriber,
            actor="cli:subscribers set",
            language=language,
            interests=new_interests,
            name=name,
        )
        if status and set_status(session, subscriber, SubscriberStatus(status), "cli:subscribers set"):
            changes.append(f"status {status}")
        click.echo(f"{subscriber.email}: " + ("; ".join(changes) if changes else "nothing to change"))


@subscribers.command("list")
@click.option("--lang", "language", help="Only this language.")
@click.option("--interest", help="Only subscribers receiving this topic.")
@click.option("--status", type=STATUS_CHOICE, help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def list_(app: App, language: str | None, interest: str | None, status: str | None, as_json: bool) -> None:
    """List subscribers.

    Example:

        bulletin subscribers list --lang fr --status active --json
    """
    query_filter = SubscriberFilter(
        language=check_language(app.settings, language) if language else None,
        interest=check_interests(app.settings, [interest]) if interest else None,
        status=SubscriberStatus(status) if status else None,
    )
    with app.reading() as session:
        rows = (subscriber_as_dict(s) for s in iter_subscribers(session, query_filter))
        if as_json:
            out = sys.stdout
            out.write("[")
            for index, row in enumerate(rows):
                out.write(("\n  " if index == 0 else ",\n  ") + json.dumps(row, ensure_ascii=False))
            out.write("\n]\n")
            return
        table = Table()
        for column in ("Email", "Name", "Lang", "Interests", "Status", "Since"):
            table.add_column(column)
        count = 0
        for row in rows:
            interests = row["interests"]
            assert isinstance(interests, list)
            table.add_row(
                str(row["email"]),
                str(row["name"] or ""),
                str(row["language"]),
                ", ".join(interests) or "(all)",
                str(row["status"]),
                str(row["created_at"])[:10],
            )
            count += 1
    console = _console()
    console.print(table)
    console.print(f"{count} subscriber(s)")


@subscribers.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@pass_app
def stats(app: App, as_json: bool) -> None:
    """Count subscribers by status, language and interest.

    Example:

        bulletin subscribers stats
    """
    with app.reading() as session:
        rows = subscriber_stats(session)
    if as_json:
        data = [{"status": s, "language": lang, "interest": i, "count": n} for s, lang, i, n in rows]
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    table = Table(title="Subscribers by status, language and interest")
    for column in ("Status", "Language", "Interest", "Count"):
        table.add_column(column, justify="right" if column == "Count" else "left")
    for status, language, interest, count in rows:
        table.add_row(status, language, interest, str(count))
    _console().print(table)


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--confirmed", is_flag=True, help="Rows are confirmed opt-ins: add them as active.")
@click.option("--update", is_flag=True, help="Overwrite language and interests of existing subscribers.")
@click.option("--dry-run", is_flag=True, help="Check the file and report, without changing anything.")
@click.option("--report", "report_path", type=click.Path(path_type=Path), help="Report file.")
@click.option("--force", is_flag=True, help="Replace the --report file if it exists.")
@pass_app
def import_(
    app: App, file: Path, confirmed: bool, update: bool, dry_run: bool, report_path: Path | None, force: bool
) -> None:
    """Import subscribers from CSV (columns email,name,language,interests).

    Interests are separated by ';' or '|'. Comma or semicolon delimiters, UTF-8 with or
    without BOM. Bad rows are skipped and listed, with their line numbers, on screen and in
    FILE.report.csv (or --report; an existing one needs --force). Re-running the same file
    changes nothing. Ctrl-C stops between two batches of rows: what was committed stays, and
    running the same import again completes it.

    Example:

        bulletin subscribers import people.csv --confirmed
    """
    check_input_file(file)
    protected = [*app.protected_files(), Protected(file, "the file being imported")]
    if report_path is not None:
        check_output_file(report_path, protected, force=force)
    else:
        # FILE.report.csv is the import's own file: a later run replaces it.
        check_output_file(default_report_path(file), protected, force=True)
    settings, engine = app.settings, app.engine
    total = file.stat().st_size
    console = Console(stderr=True, highlight=False)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("Importing", total=total)
        with _interrupt_at_batch_boundary() as stop_requested:
            report = import_csv(
                engine,
                settings,
                file,
                confirmed=confirmed,
                update=update,
                dry_run=dry_run,
                actor="cli:subscribers import",
                report_path=report_path,
                progress=lambda done: progress.update(task, completed=done),
                stop_requested=stop_requested,
            )
    out = _console()
    for line, email, reason in report.problems:
        out.print(f"line {line}: {email or '(no address)'}: {reason}", markup=False)
    hidden = report.counts["error"] + report.counts["suppressed"] - len(report.problems)
    if hidden > 0:
        out.print(f"... and {hidden} more problem(s)")
    counts = ", ".join(f"{n} {k}" for k, n in report.counts.items())
    prefix = "Dry run, nothing changed: would have " if dry_run else ""
    out.print(f"{prefix}{counts.replace('error', 'rejected')}", markup=False)
    if report.report_path:
        out.print(f"Problems written to {report.report_path}", markup=False)
    if report.interrupted:
        raise UserError(_interrupted_message(report, file), exit_code=130)


class _StopFlag:
    """Set by the first Ctrl-C; the import stops after the batch it is writing."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def _interrupt_at_batch_boundary() -> Iterator[_StopFlag]:
    """The first Ctrl-C asks the import to stop after its current batch; a second one stops at once."""
    flag = _StopFlag()

    def on_interrupt(_signum: int, _frame: object) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        click.echo("Stopping after the current batch (Ctrl-C again to stop at once)...", err=True)

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:
        # Not the main thread (an embedding program): Ctrl-C raises KeyboardInterrupt as usual.
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupted_message(report: ImportReport, file: Path) -> str:
    if report.dry_run:
        return "interrupted: dry run stopped, nothing was changed"
    if not report.committed_rows:
        return f"interrupted: no row was committed; run 'bulletin subscribers import {shown(file)}' again"
    return (
        f"interrupted: {report.committed_rows:,} row(s) committed (up to line {report.committed_line:,}); "
        f"run the same import again to complete it (rows already imported are left unchanged)"
    )


@subscribers.command("export")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default=None, help="Default: from FILE, else csv.")
@click.option("--status", type=STATUS_CHOICE, help="Only this status.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@pass_app
def export(app: App, file: Path | None, fmt: str | None, status: str | None, force: bool) -> None:
    """Export subscribers (email,name,language,interests) to FILE or standard output.

    FILE may not be the database or the config file; an existing FILE needs --force. CSV cells
    that a spreadsheet would run as a formula (starting with = + - @) get a leading apostrophe,
    which 'subscribers import' removes again.

    Example:

        bulletin subscribers export people.csv
    """
    chosen: Literal["csv", "json"] = "json" if (fmt or (file and file.suffix.lower()[1:])) == "json" else "csv"
    query_filter = SubscriberFilter(status=SubscriberStatus(status) if status else None)
    if file is None:
        write_export(app.engine, sys.stdout, fmt=chosen, query_filter=query_filter)
        return
    check_output_file(file, app.protected_files(), force=force)
    count = export_to_file(app.engine, file, fmt=chosen, query_filter=query_filter)
    click.echo(f"Exported {count} subscriber(s) to {file}", err=True)


@subscribers.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def erase(app: App, email: str, yes: bool) -> None:
    """Delete all data about a person (right to erasure); later imports skip the address.

    Only a salted hash of the address is kept. Adding it again with 'subscribers add' lifts it.

    Example:

        bulletin subscribers erase ana@example.org --yes
    """
    if not yes:
        click.confirm(f"Erase every record of {email}? This cannot be undone", abort=True)
    with app.transaction() as session:
        erase_subscriber(session, email)
    click.echo(f"Erased {email.strip()}; the address is now on the suppression list")


@subscribers.command("rotate-links")
@click.argument("email")
@pass_app
def rotate_links(app: App, email: str) -> None:
    """Give a subscriber new links: every unsubscribe, preferences or confirmation link sent before stops working.

    Use it when a person's links were forwarded, published or leaked. Later emails carry the new links.

    Example:

        bulletin subscribers rotate-links ana@example.org
    """
    with app.transaction() as session:
        subscriber = rotate_subscriber_links(session, email)
        address = subscriber.email
    click.echo(f"New links for {address}; the earlier ones no longer work")


def register(cli: click.Group) -> None:
    cli.add_command(subscribers)
