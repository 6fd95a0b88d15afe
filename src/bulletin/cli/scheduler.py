"""``bulletin scheduler run|status``: the unattended periodic and scheduled sends."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import click

from bulletin.app.editions import get_edition
from bulletin.cli import App, pass_app
from bulletin.i18n import format_local
from bulletin.runners.scheduler import current_holder, describe_holder


@click.group()
def scheduler() -> None:
    """Run the scheduler that drafts periodic editions and sends scheduled ones."""


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # APScheduler announces every run of every job; its warnings and errors are enough.
    logging.getLogger("apscheduler").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@scheduler.command("run")
@click.option(
    "--tick-seconds",
    type=click.FloatRange(min=0.1),
    help="How often to look for due editions (default: schedule.tick_seconds).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also log every job run.")
@pass_app
def run_command(app: App, tick_seconds: float | None, verbose: bool) -> None:
    """Run the scheduler in the foreground until Ctrl-C (or SIGTERM).

    Only one scheduler runs per database; a second one says which process holds the lock.

    Example:

        bulletin scheduler run
    """
    from bulletin.runners.scheduler import BulletinScheduler

    _configure_logging(verbose)
    service = BulletinScheduler(app.engine, app.settings, tick_seconds=tick_seconds)
    service.start()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("received %s, stopping", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not service.wait(1.0):
        pass
    if service.lock_lost:
        raise click.ClickException("the scheduler lock was taken over by another process")


@scheduler.command("status")
@pass_app
def status_command(app: App) -> None:
    """Say which scheduler holds this database and which editions wait for it.

    Example:

        bulletin scheduler status
    """
    from bulletin.app import workflow

    holder = current_holder(app.engine)
    timezone = app.settings.schedule.timezone
    if holder is None:
        click.echo("No scheduler is running on this database.")
    else:
        click.echo(
            f"Scheduler: {describe_holder(holder.holder)}, since "
            f"{format_local(holder.acquired_at, timezone)}, "
            f"last heartbeat {format_local(holder.heartbeat_at, timezone)}"
        )
    click.echo(f"Periodic edition: '{app.settings.schedule.cron}' ({timezone})")
    with app.reading() as session:
        waiting = [get_edition(session, i) for i in workflow.approved_waiting(session)]
        rows = [(e.id, e.status.value, e.scheduled_at) for e in waiting]
    for edition_id, status, at in rows:
        when = format_local(at, timezone) if at else "no send time"
        click.echo(f"  edition {edition_id}: {status}, {when}")


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(scheduler)
