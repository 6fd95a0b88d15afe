"""Commands of the workflow area."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
