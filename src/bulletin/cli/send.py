"""``bulletin edition send|status`` and ``bulletin worker``: deliver an edition and watch it go."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from bulletin.app.bounces import edition_report_counts
from bulletin.cli import App, pass_app
from bulletin.cli.edition import edition
from bulletin.errors import Conflict, InvalidInput, NotFound
from bulletin.mta.ledger import SendReport, delivery_counts, delivery_status, sending_editions
from bulletin.mta.locks import sending_as
from bulletin.mta.sender import (
    Progress,
    SendInterrupted,
    SendOutcome,
    preflight,
    send_edition,
    worker_name,
)


@edition.command("send")
@click.argument("edition_id", type=int)
@click.option("--test-to", "test_to", multiple=True, metavar="ADDR", help="Send a test copy to ADDR (repeatable).")
@click.option("--lang", help="With --test-to: the language of the variant to send (default: default_language).")
@click.option("--interests", help="With --test-to: the variant's interest keys, comma-separated (default: all topics).")
@click.option("--dry-run", is_flag=True, help="Print the recipients per variant; send nothing.")
@click.option("--addresses", "show_addresses", is_flag=True, help="With --dry-run: list every address too.")
@click.option(
    "--no-wait",
    is_flag=True,
    help="Return once nothing is due now; deferred retries are left to 'bulletin worker' or the scheduler.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the final report as JSON instead of text.")
@pass_app
def send_command(
    app: App,
    edition_id: int,
    test_to: tuple[str, ...],
    lang: str | None,
    interests: str | None,
    dry_run: bool,
    show_addresses: bool,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Send an approved edition to every active subscriber (or resume an interrupted send).

    Before anything changes, the DKIM key is loaded and one SMTP connection is opened and
    logged in: a failure is one line and the edition stays approved or scheduled. Each
    delivery is recorded just before its message goes to the server and again as soon as the
    server answers, so the command can be killed at any moment and run again: nobody already
    sent is sent again; the few deliveries caught mid-transaction (at most a few per
    connection) are sent again and reported as uncertain. Ctrl-C stops after the messages in
    hand and says how to resume. On SQLite a second send is refused while one runs.

    Example:

        bulletin edition send 12 --test-to marie@example.org --lang fr
        bulletin edition send 12 --dry-run
        bulletin edition send 12
    """
    if (lang or interests) and not test_to:
        raise click.UsageError("--lang and --interests choose the variant of a test send: use them with --test-to")
    if test_to:
        _test_send(app, edition_id, list(test_to), lang, interests)
        return
    if dry_run:
        _dry_run(app, edition_id, show_addresses)
        return
    _send(app, edition_id, wait=not no_wait, as_json=as_json)


def _test_send(app: App, edition_id: int, addresses: list[str], lang: str | None, interests: str | None) -> None:
    from bulletin.app import links
    from bulletin.app.subscribers import find_subscriber, interests_key, normalize_email
    from bulletin.compose import placeholders
    from bulletin.compose.variants import variant_key
    from bulletin.models import Edition, EditionVariant
    from bulletin.mta import smtp
    from bulletin.mta.notices import VariantCopy, copy_for_tester

    settings = app.settings
    language = lang or settings.default_language
    wanted = interests_key(key.strip() for key in interests.split(",") if key.strip()) if interests else ""
    recipients = [normalize_email(address) for address in addresses]
    with app.reading() as session:
        if session.get(Edition, edition_id) is None:
            raise NotFound(f"no edition {edition_id}")
        variants = {
            (v.language, v.interests): v for v in session.query(EditionVariant).filter_by(edition_id=edition_id)
        }
        variant = variants.get((language, wanted))
        if variant is None:
            known = ", ".join(sorted(f"{lg}|{ints or '(all topics)'}" for lg, ints in variants)) or "none"
            raise InvalidInput(
                f"edition {edition_id} has no variant {language}|{wanted or '(all topics)'} (it has: {known})"
            )
        people = {address: find_subscriber(session, address) for address in recipients}
        marker = placeholders.edition_marker(session, edition_id)
    copy = VariantCopy(edition_id, variant_key(language, wanted), variant.subject, variant.html, variant.text, marker)
    for address in recipients:
        subscriber = people[address]
        subscriber_id = subscriber.id if subscriber else 0
        # A subscriber testing gets their own links, so the copy shows exactly what they will receive.
        nonce = subscriber.link_nonce if subscriber else ""
        unsubscribe = links.subscriber_url(settings, "unsubscribe", subscriber_id, address, nonce)
        preferences = links.subscriber_url(settings, "preferences", subscriber_id, address, nonce)
        values = placeholders.recipient_values(subscriber.name if subscriber else None, unsubscribe, preferences)
        message = copy_for_tester(
            settings,
            copy,
            to_email=address,
            to_name=subscriber.name if subscriber else None,
            language=subscriber.language if subscriber else language,
            values=values,
            list_unsubscribe_url=unsubscribe,
        )
        try:
            smtp.send_one(settings, message)
        except smtp.SmtpFailure as failure:
            raise InvalidInput(f"test send to {address} failed: {failure.reply}") from None
        click.echo(f"Test copy of edition {edition_id} ({language}|{wanted or 'all topics'}) sent to {address}.")


def _dry_run(app: App, edition_id: int, show_addresses: bool) -> None:
    from bulletin.models import Edition
    from bulletin.mta.sender import (
        iter_recipients,
        recipients_by_variant,
    )

    with app.reading() as session:
        current = session.get(Edition, edition_id)
        if current is None:
            raise NotFound(f"no edition {edition_id}")
        rows = recipients_by_variant(session, app.settings, edition_id)
        total = 0
        click.echo(f"Edition {edition_id} ({current.status.value}): dry run, nothing is sent.")
        for row in rows:
            interests = row["interests"] or "all topics"
            if row["variant_id"] is None:
                verdict = "NOT SENT: no rendered variant (render the edition again)"
            elif not row["items"]:
                verdict = "skipped: no news for these topics"
            else:
                verdict = f"{row['items']} item(s), subject: {row['subject']}"
                total += row["recipients"]
            click.echo(f"  {row['language']} | {interests}: {row['recipients']} recipient(s) — {verdict}")
            if show_addresses and row["recipients"]:
                for address in iter_recipients(session, app.settings, row["language"], row["interests"]):
                    click.echo(f"      {address}")
        click.echo(f"{total} subscriber(s) would receive edition {edition_id}.")


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress bar (count, rate, ETA) on stderr, or nothing when not wanted."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} msg/s" if speed else "– msg/s", style="progress.data.speed")

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with progress:
        yield progress


def _send(app: App, edition_id: int, *, wait: bool, as_json: bool) -> None:
    settings, engine = app.settings, app.engine
    worker = worker_name("cli")
    interactive = not as_json and sys.stderr.isatty()

    def on_frozen(outcome: SendOutcome) -> None:
        if outcome.added and not as_json:
            click.echo(f"Edition {edition_id}: recipient list frozen ({outcome.added} deliveries).")
        if outcome.without_variant:
            keys = ", ".join(f"{key} ({count})" for key, count in sorted(outcome.without_variant.items()))
            click.echo(f"warning: active subscribers without a rendered variant were left out: {keys}", err=True)

    with _progress_bar(interactive) as bar:
        task = bar.add_task(f"edition {edition_id}", total=None) if bar else None

        def on_progress(state: Progress) -> None:
            if bar is not None:
                bar.update(task, total=state.total, completed=state.done)

        try:
            outcome = send_edition(
                engine,
                settings,
                edition_id,
                actor=app.actor,
                worker=worker,
                wait_for_retries=wait,
                progress=on_progress,
                on_frozen=on_frozen,
            )
        except SendInterrupted as stopped:
            handed = stopped.report.attempted
            click.echo(
                f"Interrupted: {handed} message(s) of edition {edition_id} were handed to the server in this run "
                f"({stopped.report.sent} accepted); run 'bulletin edition send {edition_id}' again to resume.",
                err=True,
            )
            raise SystemExit(130) from None
    if outcome.refused:
        reason = outcome.refused.removeprefix("approval void: ")
        raise Conflict(f"approval of edition {edition_id} is void because {reason}: it needs approval again")
    report = outcome.report or SendReport()
    with app.reading() as session:
        counts = delivery_counts(session, edition_id)
    if as_json:
        payload = {
            "edition": edition_id,
            "status": outcome.status.value,
            "counts": counts,
            **report.as_dict(),
            "check_seconds": round(outcome.check_seconds, 3),
            "preflight_seconds": round(outcome.preflight_seconds, 3),
            "freeze_seconds": round(outcome.freeze_seconds, 3),
        }
        click.echo(json.dumps(payload))
        return
    _print_report(edition_id, outcome.status.value, counts, report)


def _print_report(edition_id: int, status: str, counts: dict[str, int], report: Any) -> None:
    rate = report.attempted / report.elapsed if report.elapsed > 0 else 0.0
    click.echo(
        f"Edition {edition_id} is {status}: {counts['sent']} sent, {counts['deferred']} deferred, "
        f"{counts['failed']} failed, {counts['skipped']} skipped of {sum(counts.values())} deliveries; "
        f"this run handed {report.attempted} to the server in {report.elapsed:.1f}s ({rate:,.0f} msg/s)."
    )
    if report.uncertain:
        shown = ", ".join(report.uncertain_addresses[:20])
        more = report.uncertain - min(len(report.uncertain_addresses), 20)
        click.echo(
            f"{report.uncertain} delivery(ies) were being handed to the server when an earlier run stopped, "
            f"with no answer recorded, and were sent again (they may have arrived twice): {shown}"
            + (f" and {more} more" if more > 0 else "")
        )
    if report.bounced:
        click.echo(f"{report.bounced} subscriber(s) marked bounced after repeated permanent failures.")
    if report.halted:
        click.echo(f"Stopped: edition {edition_id} was paused or cancelled.")
    if counts["deferred"] and report.next_retry_at:
        click.echo(
            f"Deferred deliveries are retried from {report.next_retry_at:%Y-%m-%d %H:%M:%S} UTC "
            "(by 'bulletin worker', the scheduler, or running this command again)."
        )
    for error in report.errors[-5:]:
        click.echo(f"  last error: {error}")


@edition.command("status")
@click.argument("edition_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--errors", "error_count", type=click.IntRange(min=0), default=10, show_default=True, help="Errors shown."
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=100, show_default=True, help="Uncertain ones listed (0: all)."
)
@pass_app
def status_command(app: App, edition_id: int, as_json: bool, error_count: int, limit: int) -> None:
    """Show an edition's deliveries: counts by state, the latest errors and the uncertain ones.

    Uncertain deliveries were being handed to the server when a crash stopped the sender, with
    no answer recorded, and were sent again: they may have arrived twice.

    Example:

        bulletin edition status 12 --json
    """

    with app.reading() as session:
        status = delivery_status(session, edition_id, errors=error_count, uncertain=limit or None)
        # What came back after the SMTP transaction: bounces, complaints, unsubscribe requests.
        status["reports"] = edition_report_counts(session, edition_id)
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    counts = status["counts"]
    click.echo(f"Edition {edition_id} is {status['status']}: {status['total']} deliveries")
    for state in ("pending", "sending", "sent", "deferred", "failed", "skipped"):
        click.echo(f"  {state:<9} {counts[state]}")
    if status["next_retry_at"]:
        click.echo(f"Next retry: {status['next_retry_at']}")
    for key, count in sorted(status["without_variant"].items()):
        click.echo(f"Left out (no rendered variant {key}): {count}")
    if status["uncertain_total"]:
        click.echo(
            f"Uncertain (handed over when a sender stopped, no answer recorded; sent again, may have arrived twice): "
            f"{status['uncertain_total']}"
        )
        for row in status["uncertain"]:
            click.echo(f"  {row['email']} ({row['state']}, {row['times']}x)")
    reports = status["reports"]
    click.echo(
        f"Came back: {reports['hard']} hard bounce(s), {reports['soft']} soft bounce(s), "
        f"{reports['complaint']} complaint(s), {reports['unsubscribe']} unsubscribe request(s)"
    )
    if status["last_errors"]:
        click.echo("Last errors:")
        for row in status["last_errors"]:
            click.echo(f"  {row['email']} [{row['state']}, {row['attempts']} attempt(s)]: {row['reply']}")


@click.command("worker")
@click.option("--once", is_flag=True, help="Exit when nothing is due instead of waiting for more.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=5.0, show_default=True, help="Seconds between looks.")
@click.option("--name", default="worker", show_default=True, help="Label of this worker in the ledger and locks.")
@pass_app
def worker_command(app: App, once: bool, poll: float, name: str) -> None:
    """Send the due deliveries of every edition being sent, alongside other workers.

    On PostgreSQL run as many workers as you like, on one machine or many: they share the
    work with SELECT ... FOR UPDATE SKIP LOCKED and never send a delivery twice. On SQLite
    one sender runs at a time.

    Example:

        bulletin worker --name mail1
    """

    engine, settings = app.engine, app.settings
    worker = worker_name(name)
    total = SendReport()
    try:
        # Checked once before anything: a wrong key or SMTP login is one line, and nothing changes.
        preflight(settings)
        with sending_as(engine, worker):
            while True:
                did_work = False
                for edition_id in sending_editions(engine):
                    outcome = send_edition(
                        engine, settings, edition_id, actor=f"worker {name}", worker=worker, preflight_checked=True
                    )
                    report = outcome.report or SendReport()
                    total.merge(report)
                    did_work = did_work or report.handled > 0 or report.uncertain > 0
                    if report.handled:
                        click.echo(
                            f"edition {edition_id}: {report.sent} sent, {report.deferred} deferred, "
                            f"{report.failed} failed, {report.skipped} skipped ({outcome.status.value})"
                        )
                if once and not did_work:
                    break
                if not did_work:
                    time.sleep(poll)
    except SendInterrupted as stopped:
        total.merge(stopped.report)
        click.echo(
            f"worker stopped: {stopped.report.attempted} message(s) of edition {stopped.edition_id} were handed "
            "to the server before the stop; run 'bulletin worker' again to resume.",
            err=True,
        )
    except KeyboardInterrupt:
        click.echo("worker stopped", err=True)
    click.echo(f"worker {worker}: {total.sent} sent, {total.deferred} deferred, {total.failed} failed in total.")


def register(cli: click.Group) -> None:
    """Add ``edition send``, ``edition status`` and ``worker`` to the CLI."""
    cli.add_command(worker_command)
