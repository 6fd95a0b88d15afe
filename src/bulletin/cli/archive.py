"""``bulletin archive``: the public archive of sent editions as static files."""

from __future__ import annotations

from pathlib import Path

import click

from bulletin.cli import App, UserError, pass_app


@click.group()
def archive() -> None:
    """The public archive of sent editions."""


@archive.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--base-url",
    help="Public address the folder will be served from, for the absolute links of the Atom feeds.",
)
@pass_app
def export(app: App, folder: Path, base_url: str | None) -> None:
    """Write the archive (index per language, edition and item pages, feeds, CSS) to FOLDER.

    Links between the pages are relative, so the folder can be put anywhere on a website.
    Running it again updates the folder; a folder it did not write is refused.

    Example:

        bulletin archive export site/archive --base-url https://www.example.org/archive/
    """
    from bulletin.compose.archive import export_archive
    from bulletin.web.archive_site import StaticPages

    if base_url is not None and not base_url.startswith(("https://", "http://")):
        raise UserError(f"--base-url: {base_url!r} must start with https:// or http://", exit_code=2)
    settings = app.settings
    with app.reading() as session:
        report = export_archive(session, settings, folder, StaticPages(settings), base_url=base_url)
    click.echo(
        f"Archive written to {report.folder}: {report.written} files written, "
        f"{report.unchanged} unchanged, {report.removed} removed."
    )


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(archive)
