"""Schema migrations with Alembic, configured in code (no alembic.ini to ship)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "bulletin:migrations")
    return config


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the database schema up to date."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revisions(engine: Engine) -> set[str]:
    # A read: on SQLite it must not wait for (or take) the write lock.
    with engine.execution_options(sqlite_begin="DEFERRED").connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def is_up_to_date(engine: Engine) -> bool:
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    return current_revisions(engine) == heads


def make_revision(engine: Engine, message: str) -> None:
    """Autogenerate a migration from the models (developers only)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
