"""``bulletin bounces ...``: process the bounces, complaints and unsubscribe requests that come back."""

from __future__ import annotations

import json
import logging
import signal
import threading
from types import FrameType

import click

from bulletin.cli import App, pass_app
from bulletin.mta.inbox import InboundServer, RunSummary, fetch_imap, process_sources


@click.group()
def bounces() -> None:
    """Process the mail that comes back to the VERP and unsubscribe addresses."""


def _report(summary: RunSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False))
        return
    for result in summary.results:
        if result.kind == "unrecognised" and result.action != "duplicate":
            click.echo(f"unrecognised, left alone: {result.source}: {result.reason}", err=True)
    click.echo(summary.line())


@bounces.command("process")
@click.argument("sources", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result of every message as JSON.")
@pass_app
def process(app: App, sources: tuple[str, ...], as_json: bool) -> None:
    """Classify raw messages (files, Maildirs, or - for standard input) and act on them.

    A hard bounce (5.x.x) makes the subscriber bounced; soft ones (4.x.x) are counted; an ARF
    complaint or a mailto unsubscribe request unsubscribes; auto-replies are ignored; anything
    else is reported and left alone. Each message acts once, by its Message-ID.

    Example:

        bulletin bounces process ~/Maildir/.bounces
    """
    _report(process_sources(app.engine, app.settings, sources), as_json)


@bounces.command("fetch")
@click.option("--json", "as_json", is_flag=True, help="Print the result of every message as JSON.")
@pass_app
def fetch(app: App, as_json: bool) -> None:
    """Read the [bounces] IMAP folder over TLS, act on each message and move the processed ones.

    The password comes from BULLETIN_BOUNCE_PASSWORD. Unrecognised messages stay where they are.

    Example:

        BULLETIN_BOUNCE_PASSWORD=... bulletin bounces fetch
    """
    _report(fetch_imap(app.engine, app.settings), as_json)


@bounces.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8025, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--smtp", "use_smtp", is_flag=True, help="Speak SMTP instead of LMTP.")
@pass_app
def serve(app: App, host: str, port: int, use_smtp: bool) -> None:
    """Receive the bounce domain's mail from the organisation's MTA over LMTP (or SMTP).

    Each message is processed before it is accepted; if the database is unavailable the MTA
    is told to try again later (451), so nothing is lost.

    Example (Postfix: transport_maps with "bounces.example.org lmtp:inet:127.0.0.1:8025"):

        bulletin bounces serve --port 8025
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("bulletin")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    settings = app.settings
    settings.secret_key  # noqa: B018 - one clear line before listening when the key is missing
    server = InboundServer(app.engine, settings, host=host, port=port, lmtp=not use_smtp)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start()
    click.echo(f"Receiving {'SMTP' if use_smtp else 'LMTP'} on {host}:{port}")
    try:
        stop.wait()
    finally:
        server.stop()
    click.echo(server.summary.line())


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(bounces)
