"""Errors a user can cause, each turned into one line that names the file or setting and what to do.

Usage and config errors exit 2, runtime failures 1. Anything not listed here is a bug and keeps
its traceback.
"""

from __future__ import annotations

import errno
import os

from sqlalchemy.exc import ArgumentError, DatabaseError, DataError, NoSuchModuleError, OperationalError

from bulletin.paths import shown

USAGE = 2
RUNTIME = 1

# SQLite's own words for a file that is not a database or is damaged.
_DAMAGED = ("file is not a database", "malformed", "file is encrypted", "not a database")
_CANNOT_OPEN = ("unable to open database file",)
_READ_ONLY = ("readonly database", "read-only", "attempt to write a readonly")
_OUT_OF_DATE = ("no such table", "no such column")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else text


def database_failure(exc: DatabaseError, database: str) -> tuple[str, int]:
    """(message, exit status) for an error the database driver raised."""
    reason = _first_line(str(exc.orig) if exc.orig is not None else str(exc))
    lowered = reason.lower()
    if any(mark in lowered for mark in _DAMAGED):
        return (
            f"{database} is not a bulletin database or is damaged ({reason}): restore it from a backup, "
            "or move it away and run 'bulletin init' to start an empty one",
            RUNTIME,
        )
    if any(mark in lowered for mark in _CANNOT_OPEN):
        return (
            f"cannot open the database {database}: check that its folder exists and is writable",
            RUNTIME,
        )
    if any(mark in lowered for mark in _READ_ONLY):
        return f"the database {database} is read-only: make it (and its folder) writable", RUNTIME
    if "database is locked" in lowered:
        return f"the database {database} is locked by another bulletin command: try again when it ends", RUNTIME
    if any(mark in lowered for mark in _OUT_OF_DATE):
        return (
            f"the database {database} is not set up or is out of date ({reason}): run 'bulletin db upgrade'",
            RUNTIME,
        )
    if isinstance(exc, DataError) or "out of range" in lowered:
        return f"a value is out of range for the database: {reason}", USAGE
    if isinstance(exc, OperationalError):
        return f"database error on {database}: {reason}", RUNTIME
    return f"database error on {database}: {reason}", RUNTIME


def os_failure(exc: OSError) -> tuple[str, int]:
    """(message, exit status) for a file operation that failed on a path the user gave."""
    if exc.errno == errno.ENOENT and exc.filename in (".", "", None) and not _cwd_exists():
        return "the current folder no longer exists: change to another folder and run the command again", USAGE
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return f"cannot complete the command: {reason}", RUNTIME
    where = shown(os.fsdecode(exc.filename))
    if exc.errno == errno.ENAMETOOLONG:
        return f"{where}: the path is too long", USAGE
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}: {reason} (check the permissions of the file and its folder)", RUNTIME
    if exc.errno == errno.ENOSPC:
        return f"{where}: no space left on the device; nothing more was written", RUNTIME
    return f"{where}: {reason}", RUNTIME


def _cwd_exists() -> bool:
    try:
        os.getcwd()
    except FileNotFoundError:
        return False
    return True


def overflow_failure(exc: OverflowError) -> tuple[str, int]:
    """(message, exit status) for a number or date too large for the database or the calendar."""
    text = str(exc)
    if "date" in text:
        return (
            f"a date is out of range ({text}): give dates between the years 1 and 9999, inside that span",
            USAGE,
        )
    return f"a number is too large ({text}): ids and counts go up to 9223372036854775807", USAGE


def url_failure(exc: ArgumentError | NoSuchModuleError, url: str) -> tuple[str, int]:
    """(message, exit status) for a database URL that cannot be used."""
    if isinstance(exc, NoSuchModuleError):
        return f"database.url {url!r}: unknown database kind ({_first_line(str(exc))})", USAGE
    return (
        f"database.url {url!r} is not a database URL: use sqlite:///subscribers.db or postgresql://user@host/dbname",
        USAGE,
    )
