"""``bulletin edition submit|reopen|approve|review|schedule|pause|resume|cancel|history``: the editorial workflow."""

from __future__ import annotations

import click

from bulletin.app.editions import get_edition
from bulletin.cli import App, pass_app
from bulletin.cli.edition import edition
from bulletin.compose.approval import approve, record_void, schedule
from bulletin.i18n import format_local
from bulletin.mta.review import send_review

_BY_HELP = "Who is acting, as logged in the edition's history (default: cli)."


def _refresh_approval(app: App, edition_id: int, actor: str) -> None:
    """Record a void approval in its own transaction, so it stays void when the command is refused."""
    problems = record_void(app.engine, app.settings, edition_id, actor=actor)
    if problems:
        click.echo(
            f"The approval of edition {edition_id} is void ({'; '.join(problems)}); it is back in review.", err=True
        )


@edition.command("submit")
@click.argument("edition_id", type=int)
@click.option("--by", "actor", default="cli", show_default=True, help=_BY_HELP)
@pass_app
def submit_command(app: App, edition_id: int, actor: str) -> None:
    """Send a draft edition to review.

    Example:

        bulletin edition submit 12 --by marie
    """
    from bulletin.app import workflow

    with app.transaction() as session:
        workflow.submit(session, edition_id, actor)
    click.echo(f"Edition {edition_id} is in review.")


@edition.command("reopen")
@click.argument("edition_id", type=int)
@click.option("--reason", help="Why, for the history.")
@click.option("--by", "actor", default="cli", show_default=True, help=_BY_HELP)
@pass_app
def reopen_command(app: App, edition_id: int, reason: str | None, actor: str) -> None:
    """Take an edition in review back to draft (its approvals so far are voided).

    Example:

        bulletin edition reopen 12 --reason "the Spanish intro is missing"
    """
    from bulletin.app import workflow

    with app.transaction() as session:
        workflow.reopen(session, edition_id, actor, reason)
    click.echo(f"Edition {edition_id} is a draft again.")


@edition.command("approve")
@click.argument("edition_id", type=int)
@click.option("--by", "approver", required=True, help="Name of the person approving (logged with the approval).")
@pass_app
def approve_command(app: App, edition_id: int, approver: str) -> None:
    """Approve exactly what every subscriber will receive.

    Renders every variant, refuses if one breaks a check (size budget, unsubscribe link), and
    locks the approval to each variant's content hash: any later change voids it.

    Example:

        bulletin edition approve 12 --by "Ana Pérez"
    """
    from bulletin.app import workflow

    approval = approve(app.engine, app.settings, edition_id, approver)
    with app.reading() as session:
        current = get_edition(session, edition_id)
        count = len({a.approver.casefold() for a in workflow.valid_approvals(session, edition_id)})
        status = current.status
    needed = app.settings.workflow.approvals_required
    variants = len(approval.variant_hashes)
    if status is workflow.S.APPROVED:
        click.echo(f"Edition {edition_id} approved by {approver} ({variants} variant(s) locked).")
    else:
        click.echo(f"Approval {count} of {needed} recorded for edition {edition_id} ({variants} variant(s) locked).")


@edition.command("review")
@click.argument("edition_id", type=int)
@click.option(
    "--to",
    "recipients",
    multiple=True,
    metavar="ADDR",
    help="Reviewer address (repeatable); default: workflow.reviewers of the config.",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="LANG|INTERESTS",
    help="Only this variant: a language (fr), or language|interests (en|cities,youth); repeatable.",
)
@click.option("--by", "actor", default="cli", show_default=True, help=_BY_HELP)
@pass_app
def review_command(
    app: App, edition_id: int, recipients: tuple[str, ...], variants: tuple[str, ...], actor: str
) -> None:
    """Send reviewers a test message of every variant, with a link to the preview index.

    A draft moves to review. Test messages never touch the delivery ledger.

    Example:

        bulletin edition review 12 --to marie@example.org --to paul@example.org --variant fr
    """

    to = list(recipients) or list(app.settings.workflow.reviewers)
    if not to:
        raise click.UsageError("name at least one reviewer with --to ADDR (or set workflow.reviewers)")
    outcome = send_review(app.engine, app.settings, edition_id, to, variants=list(variants), actor=actor)
    click.echo(
        f"Sent {outcome.messages} test message(s) of {outcome.variants} variant(s) to {', '.join(outcome.recipients)}."
    )
    click.echo(f"Preview index: {outcome.preview_index}")


@edition.command("schedule")
@click.argument("edition_id", type=int)
@click.option("--at", "at", required=True, help="Send time, 'YYYY-MM-DD HH:MM' in schedule.timezone.")
@click.option("--by", "actor", default="cli", show_default=True, help=_BY_HELP)
@pass_app
def schedule_command(app: App, edition_id: int, at: str, actor: str) -> None:
    """Send an approved edition at a given time (the scheduler starts it).

    The time is read in the configured time zone (schedule.timezone) unless it carries an offset.

    Example:

        bulletin edition schedule 12 --at "2026-12-01 09:00"
    """

    _refresh_approval(app, edition_id, actor)
    with app.transaction() as session:
        current = schedule(session, app.settings, edition_id, at, actor)
        when = current.scheduled_at
    assert when is not None
    timezone = app.settings.schedule.timezone
    click.echo(
        f"Edition {edition_id} scheduled for {format_local(when, timezone)} ({timezone}), "
        f"{when:%Y-%m-%d %H:%M} UTC. The scheduler ('bulletin scheduler run') sends it."
    )


@edition.command("pause")
@click.argument("edition_id", type=int)
@click.option("--reason", help="Why, for the history.")
@click.option("--by", "actor", default="cli", show_default=True, help=_BY_HELP)
@pass_app
def pause_command(app: App, edition_id: int, reason: str | None, actor: str) -> None:
    """Hold a scheduled or sending edition (a send stops after its current batch).

    Example:

        bulletin edition pause 12 --reason "typo in the Spanish subject"
    """
    from bulletin.app import workflow

    with app.transaction() as session:
        workflow.pause(session, edition_id, actor, reason)
    click.echo(f"Edition {edition_id} paused; 'bulletin edition resume {edition_id}' continues it.")


@edition.command("resume")
@click.argument("edition_id", type=int)
@click.option("--by", "actor", default="cli", show_default=True, help=_BY_HELP)
@pass_app
def resume_command(app: App, edition_id: int, actor: str) -> None:
    """Continue a paused edition: scheduled again, or sending where it stopped.

    Example:

        bulletin edition resume 12
    """
    from bulletin.app import workflow

    with app.transaction() as session:
        current = workflow.resume(session, edition_id, actor)
        status = current.status
    if status is workflow.S.SENDING:
        click.echo(
            f"Edition {edition_id} is sending again: the scheduler continues it "
            f"(or run 'bulletin edition send {edition_id}')."
        )
    else:
        click.echo(f"Edition {edition_id} is {status.value} again.")


@edition.command("cancel")
@click.argument("edition_id", type=int)
@click.option("--reason", help="Why, for the history.")
@click.option("--by", "actor", default="cli", show_default=True, help=_BY_HELP)
@pass_app
def cancel_command(app: App, edition_id: int, reason: str | None, actor: str) -> None:
    """Cancel an edition for good (a send stops after its current batch).

    Example:

        bulletin edition cancel 12 --reason "replaced by edition 13"
    """
    from bulletin.app import workflow

    with app.transaction() as session:
        workflow.cancel(session, edition_id, actor, reason)
    click.echo(f"Edition {edition_id} cancelled.")


@edition.command("history")
@click.argument("edition_id", type=int)
@pass_app
def history_command(app: App, edition_id: int) -> None:
    """Show who moved an edition through its lifecycle, and its approvals.

    Example:

        bulletin edition history 12
    """
    from bulletin.app import workflow

    timezone = app.settings.schedule.timezone
    with app.reading() as session:
        current = get_edition(session, edition_id)
        transitions = workflow.transitions_of(session, edition_id)
        approvals = workflow.approvals_of(session, edition_id)
        status, scheduled_at = current.status, current.scheduled_at
    headline = f"Edition {edition_id}: {status.value}"
    if scheduled_at is not None and status in (workflow.S.SCHEDULED, workflow.S.PAUSED, workflow.S.SENDING):
        headline += f", send time {format_local(scheduled_at, timezone)}"
    click.echo(headline)
    if not transitions:
        click.echo("  created, never moved")
    for row in transitions:
        reason = f"  ({row.reason})" if row.reason else ""
        click.echo(
            f"  {format_local(row.at, timezone)}  {row.from_status:>9} -> {row.to_status:<9}  by {row.actor}{reason}"
        )
    if approvals:
        click.echo("Approvals:")
    for approval in approvals:
        state = (
            "valid"
            if approval.voided_at is None
            else f"void since {format_local(approval.voided_at, timezone)}: {approval.void_reason}"
        )
        click.echo(
            f"  {format_local(approval.at, timezone)}  {approval.approver}, "
            f"{len(approval.variant_hashes)} variant(s), {state}"
        )


def register(cli: click.Group) -> None:
    """The commands are added to the ``edition`` group when this module is imported."""
