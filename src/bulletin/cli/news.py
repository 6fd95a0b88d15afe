"""``bulletin news ...``: ingest and curate news items (issue 3)."""

from __future__ import annotations

import click


@click.group()
def news() -> None:
    """Ingest news items and adjust their language, topics and translations."""


def register(cli: click.Group) -> None:
    cli.add_command(news)
