"""The ``bulletin`` command line: thin commands over the plain functions of the package."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlalchemy.orm import Session

from bulletin import __version__
from bulletin.cli.failures import USAGE, database_failure, os_failure, overflow_failure, url_failure
from bulletin.config import ConfigError, Settings, config_path, load_settings
from bulletin.db import engine_for, reading, sqlite_file_missing, transaction
from bulletin.errors import BulletinError, Hint, NextStep
from bulletin.paths import Protected, database_files, shown, sqlite_database_file

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """What every command needs: the settings and the database, opened on first use."""

    config_file: str | None
    actor: str = "cli"
    _settings: Settings | None = None
    _engine: Engine | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            missing = sqlite_file_missing(self.settings.database_url)
            if missing is not None:
                raise BulletinError(f"no database at {missing}: run 'bulletin init' (or 'bulletin db upgrade')")
            self._engine = engine_for(self.settings)
            # Closing the connections at exit lets SQLite fold its write-ahead log into the file.
            self.cleanups.append(self._engine.dispose)
            from bulletin.migrate import is_up_to_date

            if not is_up_to_date(self._engine):
                raise BulletinError(
                    f"the database at {self.settings.database_url} is not set up or is out of date: "
                    "run 'bulletin db upgrade' (or 'bulletin init')"
                )
        return self._engine

    def use_settings(self, settings: Settings) -> None:
        """Settings a command loaded itself (``init``), so that messages can name its database."""
        self._settings = settings

    def protected_files(self) -> list[Protected]:
        """Files no export or report may replace: the database (and its -wal, -shm) and the config."""
        protected = database_files(self.settings.database_url)
        protected.append(Protected(config_path(self.config_file), "the config file"))
        return protected

    def database_label(self) -> str:
        """The database as named in messages: its file, or its URL without the password."""
        if self._settings is None:
            return "the database"
        url = self._settings.database_url
        database = sqlite_database_file(url)
        if database is not None:
            return shown(database)
        try:
            return make_url(url).render_as_string(hide_password=True)
        except ArgumentError:
            return url

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.engine) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with reading(self.engine) as session:
            yield session


pass_app = click.make_pass_decorator(App)


def cli_hint(hint: Hint) -> str:
    """The command line's wording of a domain error's next step."""
    number = hint.edition_id if hint.edition_id is not None else "N"
    commands = {
        NextStep.SUBMIT: f"bulletin edition submit {number}",
        NextStep.APPROVE: f"bulletin edition approve {number} --by NAME",
        NextStep.RESUME: f"bulletin edition resume {number}",
        NextStep.SCHEDULE: f"bulletin edition schedule {number} --at 'YYYY-MM-DD HH:MM'",
        NextStep.SEND_NOW: f"to send now: bulletin edition send {number}",
        NextStep.SEND_TIME: "--at 'YYYY-MM-DD HH:MM', in schedule.timezone",
        NextStep.APPROVER: "name the approver with --by NAME",
    }
    return commands[hint.step]


def with_cli_hint(exc: BulletinError) -> str:
    """A domain error's line, followed by its next step as a command."""
    line = str(exc)
    if exc.hint is None:
        return line
    # "... (submit it for review first)" reads best as "... (submit it for review first: bulletin edition submit 3)".
    if line.endswith(")"):
        return f"{line[:-1]}: {cli_hint(exc.hint)})"
    return f"{line} ({cli_hint(exc.hint)})"


class UserError(click.ClickException):
    """One line on stderr and the given exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        # click declares exit_code on the class; each error here carries its own.
        self.exit_code = exit_code  # type: ignore[misc]


# Top-level command -> the modules that define it (each exposes ``register(cli)``). Modules are
# imported only when their command runs, so `bulletin --help` stays fast and light.
COMMAND_HELP = {
    "init": "Write a commented sample config (if none) and create the database.",
    "db": "Database schema commands.",
    "subscribers": "Add, change, list, import, export and erase subscribers.",
    "news": "Ingest news items and adjust their language, topics and translations.",
    "edition": "Create, preview, approve, schedule and send editions of the bulletin.",
    "worker": "Send due deliveries of every edition (several may run on PostgreSQL).",
    "scheduler": "Run the scheduler that drafts and sends editions on time.",
    "serve": "Serve the subscription and staff web pages.",
    "staff": "Manage staff accounts for the web pages.",
    "archive": "Export the public archive of sent editions as static files.",
    "web": "Pieces of the web pages for other sites (the embeddable subscription form).",
    "bounces": "Process bounces, complaints and unsubscribe requests (files, IMAP, LMTP).",
}
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "init": ("admin",),
    "db": ("admin",),
    "subscribers": ("subscribers",),
    "news": ("news",),
    "edition": ("edition", "send", "workflow"),
    "worker": ("send",),
    "scheduler": ("scheduler",),
    "serve": ("web",),
    "staff": ("staff",),
    "archive": ("archive",),
    "web": ("web",),
    "bounces": ("bounces",),
}


class BulletinGroup(click.Group):
    """The top-level group: loads commands lazily and turns domain errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMAND_HELP[name]) for name in self.list_commands(ctx)])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            for module_name in COMMAND_MODULES[cmd_name]:
                module = importlib.import_module(f"bulletin.cli.{module_name}")
                module.register(self)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise UserError(str(exc), exit_code=USAGE) from None
        except BulletinError as exc:
            raise UserError(with_cli_hint(exc), exit_code=exc.exit_code) from None
        except DatabaseError as exc:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            message, status = database_failure(exc, app.database_label() if app else "the database")
            raise UserError(message, exit_code=status) from None
        except (ArgumentError, NoSuchModuleError) as exc:
            app = ctx.obj if isinstance(ctx.obj, App) else None
            url = app.settings.database.url if app and app._settings else ""
            message, status = url_failure(exc, url)
            raise UserError(message, exit_code=status) from None
        except OverflowError as exc:
            message, status = overflow_failure(exc)
            raise UserError(message, exit_code=status) from None
        except OSError as exc:
            message, status = os_failure(exc)
            raise UserError(message, exit_code=status) from None


@click.group(cls=BulletinGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    # Checked by the loader, which names a folder, a device or an unreadable file in one line.
    type=click.Path(),
    envvar="BULLETIN_CONFIG",
    help="Config file (default: ./bulletin.toml, or BULLETIN_CONFIG).",
)
@click.version_option(__version__, prog_name="bulletin")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Build multilingual bulletins from news items and send them to subscribers.

    Example:

        bulletin init && bulletin subscribers add ana@example.org --lang es
    """
    try:
        os.getcwd()
    except FileNotFoundError:
        raise UserError(
            "the current folder no longer exists: change to another folder and run the command again", USAGE
        ) from None
    app = App(config_file=config_file)
    ctx.obj = app
    ctx.call_on_close(lambda: [cleanup() for cleanup in app.cleanups])


def main() -> None:
    """Entry point of the ``bulletin`` console script."""
    try:
        cli(prog_name="bulletin")
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def output_path(value: str | None) -> Path | None:
    return Path(value) if value else None
