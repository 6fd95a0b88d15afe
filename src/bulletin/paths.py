"""Paths the user gives: named briefly in messages, and checked before anything is written to them.

An export or a report must never replace the database, its write-ahead files, the config file or
the file being imported, nor be renamed over a device such as ``/dev/full``; an existing file is
replaced only when the user says ``--force``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bulletin.errors import InvalidInput

# Paths longer than this are shown cut in the middle, so an error stays on one readable line.
SHOWN_LENGTH = 100
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def shown(path: str | os.PathLike[str]) -> str:
    """The path as text for a message, cut in the middle when it is very long."""
    text = os.fspath(path)
    if len(text) <= SHOWN_LENGTH:
        return text
    half = SHOWN_LENGTH // 2
    return f"{text[:half]}…{text[-half:]} ({len(text)} characters)"


class RefusedPath(InvalidInput):
    """A path argument that cannot be used as given: a usage error."""

    exit_code = 2


@dataclass(frozen=True)
class Protected:
    """A file no output may replace, and what to call it in the refusal."""

    path: Path
    label: str


def sqlite_database_file(url: str) -> Path | None:
    """The file of a SQLite database URL, else None (PostgreSQL, memory, or an unreadable URL)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def database_files(url: str) -> list[Protected]:
    """The SQLite database file and its -wal, -shm and -journal companions."""
    database = sqlite_database_file(url)
    if database is None:
        return []
    protected = [Protected(database, "the database")]
    for suffix in SQLITE_COMPANIONS:
        protected.append(Protected(database.with_name(database.name + suffix), f"the database's {suffix} file"))
    return protected


def _same_file(path: Path, other: Path) -> bool:
    try:
        if path.exists() and other.exists():
            return os.path.samefile(path, other)
        return path.resolve() == other.resolve()
    except OSError:
        return os.path.abspath(path) == os.path.abspath(other)


def check_output_file(path: Path, protected: Iterable[Protected], *, force: bool, option: str = "--force") -> None:
    """Refuse (RefusedPath) an output path that would destroy something, before anything is written."""
    for item in protected:
        if _same_file(path, item.path):
            raise RefusedPath(f"{shown(path)} is {item.label}: write the output to another file")
    try:
        status = os.stat(path)
    except FileNotFoundError:
        status = None
    except NotADirectoryError:
        raise RefusedPath(f"{shown(path)}: a part of the path is a file, not a folder") from None
    except OSError as exc:
        raise RefusedPath(f"{shown(path)}: {exc.strerror or exc}") from None
    if status is not None:
        if not stat.S_ISREG(status.st_mode):
            raise RefusedPath(f"{shown(path)} is not a regular file (a folder, device or pipe): give a file name")
        if not force:
            raise RefusedPath(f"{shown(path)} already exists: add {option} to replace it")
    folder = path.parent
    if not folder.is_dir():
        raise RefusedPath(f"the folder {shown(folder)} does not exist: create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RefusedPath(f"the folder {shown(folder)} is not writable")


def check_input_file(path: Path) -> None:
    """Refuse an input that is missing or not a regular file (a FIFO or /dev/zero would never end)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise RefusedPath(f"{shown(path)}: no such file") from None
    except OSError as exc:
        raise RefusedPath(f"{shown(path)}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(status.st_mode):
        raise RefusedPath(f"{shown(path)} is not a regular file (a folder, device or pipe): give a CSV file")
