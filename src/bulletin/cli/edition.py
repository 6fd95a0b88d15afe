"""``bulletin edition ...``: create, arrange and preview editions (issue 4).

Other modules (send, workflow) add their commands to the ``edition`` group defined here.
"""

from __future__ import annotations

import click


@click.group()
def edition() -> None:
    """Create, preview, approve and send editions of the bulletin."""


def register(cli: click.Group) -> None:
    cli.add_command(edition)
