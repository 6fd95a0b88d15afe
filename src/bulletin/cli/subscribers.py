"""``bulletin subscribers ...``: the admins' subscriber commands."""

from __future__ import annotations

import click


@click.group()
def subscribers() -> None:
    """Add, change, list, import, export and erase subscribers."""


def register(cli: click.Group) -> None:
    cli.add_command(subscribers)
