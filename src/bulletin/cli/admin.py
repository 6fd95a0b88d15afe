"""``bulletin init`` and ``bulletin db ...``."""

from __future__ import annotations

import stat
from pathlib import Path

import click

from bulletin.cli import App, pass_app
from bulletin.config import config_path, load_settings, sample_config
from bulletin.db import engine_for
from bulletin.errors import BulletinError
from bulletin.migrate import upgrade
from bulletin.paths import shown


@click.command()
@click.option("--force", is_flag=True, help="Overwrite an existing config file.")
@pass_app
def init(app: App, force: bool) -> None:
    """Write a commented sample config (if none) and create the database.

    Example:

        bulletin --config demo/bulletin.toml init
    """
    path = config_path(app.config_file)
    if path.exists() and not force:
        click.echo(f"Keeping existing config {path}")
    else:
        temporary = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(sample_config(), encoding="utf-8")
            temporary.replace(path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise BulletinError(
                f"cannot write the config {shown(path)}: {exc.strerror or exc} "
                "(run 'bulletin init' in a writable folder, or give --config PATH)"
            ) from None
        click.echo(f"Wrote config {path}")
    warning = writable_by_others(path)
    if warning:
        click.echo(f"Warning: {warning}", err=True)
    settings = load_settings(path)
    app.use_settings(settings)
    engine = engine_for(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"Database ready at {settings.database_url}")


def writable_by_others(path: Path) -> str | None:
    """Why a config file anyone else could change is a risk, or None when only its owner can write it."""
    mode = path.stat().st_mode
    if not mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    who = "everyone" if mode & stat.S_IWOTH else "its group"
    return (
        f"{path} can be changed by {who} (mode {stat.S_IMODE(mode):o}); whoever can change it chooses the "
        f"database, SMTP server and templates. Fix it with: chmod go-w {path}"
    )


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Apply every pending schema migration.

    Example:

        bulletin db upgrade
    """
    engine = engine_for(app.settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"Database up to date at {app.settings.database_url}")


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(db)
