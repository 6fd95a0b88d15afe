"""Engine, sessions and transactions, for SQLite (embedded default) and PostgreSQL.

Model code never commits: the edge (a CLI command, a web handler, a scheduler job) opens one
transaction with :func:`transaction` and the block commits or rolls back as a whole. On SQLite
write transactions begin IMMEDIATE, so a writer waits for the lock at the start (within the
busy timeout) instead of failing half-way; WAL lets readers go on meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bulletin.config import Settings
from bulletin.errors import BulletinError


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def sqlite_file_missing(url: str) -> Path | None:
    """The path of a SQLite database file that does not exist yet, else None."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


def make_engine(url: str, *, busy_timeout_ms: int = 10000, **kwargs: Any) -> Engine:
    """Create an engine with bulletin's safety settings for its database kind."""
    url = normalise_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True, **kwargs)
        except ImportError as exc:
            raise BulletinError(
                f"the database driver {exc.name or 'psycopg'} is not installed: pip install 'bulletin[postgres]'"
            ) from None

    path = make_url(url).database
    file_path = Path(path) if path and path != ":memory:" and not path.startswith("file:") else None
    if file_path is not None:
        make_private_dir(file_path.parent)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000}, **kwargs)

    @event.listens_for(engine, "do_connect")
    def _create_private(_dialect: Any, _record: Any, _args: Any, _kwargs: Any) -> None:
        # The database holds personal data, password hashes and salts: readable by its owner only.
        # SQLite gives the -wal and -shm files the database file's permissions.
        if file_path is not None and not file_path.exists():
            os.close(os.open(file_path, os.O_WRONLY | os.O_CREAT, 0o600))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # FULL: a committed ledger row (a message marked sending or sent) survives a power cut too.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def make_private_dir(path: Path) -> None:
    """Create a folder and any missing parents readable by their owner only (0700); existing ones stay as they are."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def engine_for(settings: Settings, **kwargs: Any) -> Engine:
    return make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms, **kwargs)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One write transaction: commits when the block ends, rolls back if it raises."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A read-only session; on SQLite it takes no write lock."""
    bind = engine.execution_options(sqlite_begin="DEFERRED") if is_sqlite(engine) else engine
    # The session begins on first use. Objects are detached before the rollback, so attributes
    # loaded inside the block stay readable after it.
    with Session(bind, expire_on_commit=False) as session:
        yield session
        session.expunge_all()
