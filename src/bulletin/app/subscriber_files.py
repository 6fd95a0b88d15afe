"""Import and export subscribers as CSV (and JSON for export), streamed in batches.

The import reads the file line by line, validates every row, skips bad rows with their line
number and reason, and writes good rows in batched transactions, so memory stays flat however
large the file is. Duplicates within one file are found through a temporary on-disk index.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from bulletin.app.csv_cells import escape_cell, escape_row, unescape_cell
from bulletin.app.subscribers import (
    SubscriberFilter,
    check_interests,
    check_language,
    clean_name,
    email_key,
    iter_subscribers,
    normalize_email,
    record_event,
    suppression_hash,
    suppression_salt,
)
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import InvalidInput
from bulletin.models import Subscriber, SubscriberEvent, SubscriberStatus, Suppression, utcnow
from bulletin.models.subscriber import new_subscriber_values
from bulletin.paths import check_input_file, shown

COLUMNS = ("email", "name", "language", "interests")
MAX_LINE_BYTES = 64 * 1024
MAX_CONTINUATION_LINES = 10
BATCH_SIZE = 1000

Outcome = Literal["added", "updated", "unchanged", "suppressed", "error"]


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    counts: dict[str, int] = field(
        default_factory=lambda: {"added": 0, "updated": 0, "unchanged": 0, "suppressed": 0, "error": 0}
    )
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    report_path: Path | None = None
    dry_run: bool = False
    # Only the first problems are kept in memory; all of them go to the report file.
    max_problems_kept: int = 1000
    # Rows of the batches committed so far, and the last line they reached (an interrupt stops
    # the import between two batches).
    committed_rows: int = 0
    committed_line: int = 0
    interrupted: bool = False

    def note(self, line: int, email: str, outcome: Outcome, reason: str = "") -> None:
        self.counts[outcome] += 1
        if outcome in ("error", "suppressed") and len(self.problems) < self.max_problems_kept:
            self.problems.append((line, email, reason or outcome))

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


@dataclass
class _Row:
    line: int
    email: str
    key: str
    name: str | None
    language: str
    interests: str


class _SeenAddresses:
    """Addresses already met in this file, kept in a temporary SQLite file, not in memory."""

    def __init__(self) -> None:
        handle, self.path = tempfile.mkstemp(prefix="bulletin-import-", suffix=".db")
        os.close(handle)
        self.db = sqlite3.connect(self.path)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER)")

    def first_line(self, key: str) -> int | None:
        row = self.db.execute("SELECT line FROM seen WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else None

    def add(self, key: str, line: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, line))

    def close(self) -> None:
        self.db.close()
        Path(self.path).unlink(missing_ok=True)


def _physical_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes) for each line; None for a line longer than MAX_LINE_BYTES.

    Over-long lines are skipped in chunks, so a 10 MB line never sits in memory whole.
    """
    number = 0
    while True:
        chunk = stream.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        number += 1
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(MAX_LINE_BYTES)
            yield number, None
            continue
        yield number, chunk


def _records(stream: IO[bytes]) -> Iterator[tuple[int, bytes | None]]:
    """Yield (first line number, bytes) for each CSV record; None for an over-long line.

    A record whose quotes are unbalanced continues on the next lines (a quoted field holding a
    line break), up to MAX_CONTINUATION_LINES; past that the quote is taken as unterminated, the
    first line is yielded alone (its parse will report it) and the following lines are read again.
    """
    pending: deque[tuple[int, bytes | None]] = deque()
    lines = _physical_lines(stream)

    def next_line() -> tuple[int, bytes | None] | None:
        return pending.popleft() if pending else next(lines, None)

    while (first := next_line()) is not None:
        number, raw = first
        if raw is None or raw.count(b'"') % 2 == 0:
            yield first
            continue
        record, quotes = raw, raw.count(b'"')
        taken: list[tuple[int, bytes | None]] = []
        while len(taken) < MAX_CONTINUATION_LINES:
            following = next_line()
            if following is None:
                break
            taken.append(following)
            if following[1] is None:
                break
            record += following[1]
            quotes += following[1].count(b'"')
            if quotes % 2 == 0:
                break
        if quotes % 2 == 0 and len(record) <= MAX_LINE_BYTES:
            yield number, record
        else:
            # The quote never closed: the first line is parsed alone (and reported), the rest re-read.
            yield number, raw
            pending.extendleft(reversed(taken))


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8").rstrip("\r\n")


def _split_interests(value: str) -> list[str]:
    for separator in "|;":
        value = value.replace(separator, ",")
    return [part for part in value.split(",") if part.strip()]


class _CsvLayout:
    """Delimiter and column positions taken from the header line."""

    def __init__(self, header: str) -> None:
        self.delimiter = ";" if header.count(";") > header.count(",") else ","
        names = [name.strip().lower() for name in next(csv.reader([header], delimiter=self.delimiter))]
        if "email" not in names:
            raise InvalidInput(
                f"the header line has no 'email' column (found: {_printable(', '.join(names))[:200] or 'nothing'}); "
                f"expected columns {','.join(COLUMNS)}"
            )
        self.positions = {column: names.index(column) for column in COLUMNS if column in names}
        self.width = len(names)

    def parse(self, text: str) -> dict[str, str]:
        rows = list(csv.reader([text], delimiter=self.delimiter, strict=True))
        if len(rows) != 1:
            raise InvalidInput("unterminated quoted field")
        values = [unescape_cell(value) for value in rows[0]]
        if len(values) > self.width:
            raise InvalidInput(f"{len(values)} fields where the header has {self.width}")
        return {column: (values[i] if i < len(values) else "") for column, i in self.positions.items()}


def _printable(text: str) -> str:
    """Text for a one-line message: control characters shown as escapes."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _validate(settings: Settings, line: int, fields: dict[str, str]) -> _Row:
    email = normalize_email(fields.get("email", ""))
    language = fields.get("language", "").strip() or settings.default_language
    return _Row(
        line=line,
        email=email,
        key=email_key(email),
        name=clean_name(fields.get("name")),
        language=check_language(settings, language),
        interests=check_interests(settings, _split_interests(fields.get("interests", ""))),
    )


def _apply_batch(
    session: Session,
    settings: Settings,
    rows: list[_Row],
    report: ImportReport,
    write_problem: Callable[[int, str, str, str], None],
    *,
    confirmed: bool,
    update: bool,
    actor: str,
) -> None:
    existing = {
        subscriber.email_key: subscriber
        for subscriber in session.scalars(select(Subscriber).where(Subscriber.email_key.in_([r.key for r in rows])))
    }
    salt = suppression_salt(session, create=False)
    suppressed: set[str] = set()
    if salt is not None:
        hashes = {suppression_hash(salt, r.key): r.key for r in rows if r.key not in existing}
        if hashes:
            found = session.scalars(select(Suppression.email_hash).where(Suppression.email_hash.in_(list(hashes))))
            suppressed = {hashes[h] for h in found}

    now = utcnow()
    status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
    new_rows: list[_Row] = []
    for row in rows:
        current = existing.get(row.key)
        if row.key in suppressed:
            report.note(row.line, row.email, "suppressed", "address was erased; add it explicitly to allow it again")
            write_problem(row.line, row.email, "suppressed", "address was erased")
        elif current is None:
            new_rows.append(row)
            report.note(row.line, row.email, "added")
        elif update and (current.language != row.language or current.interests != row.interests):
            detail = (
                f"import: language {current.language} -> {row.language}; "
                f"interests {current.interests or '(all)'} -> {row.interests or '(all)'}"
            )
            current.language = row.language
            current.interests = row.interests
            current.updated_at = now
            record_event(session, current, "updated", actor, detail=detail)
            report.note(row.line, row.email, "updated")
        else:
            report.note(row.line, row.email, "unchanged")

    if not new_rows:
        session.flush()
        return
    created = session.execute(
        insert(Subscriber).returning(Subscriber.id, Subscriber.email_key),
        [
            new_subscriber_values(
                row.email,
                row.key,
                name=row.name,
                language=row.language,
                interests=row.interests,
                status=status,
                source="import",
                confirmed=confirmed,
                at=now,
            )
            for row in new_rows
        ],
    )
    ids = {key: subscriber_id for subscriber_id, key in created}
    session.execute(
        insert(SubscriberEvent),
        [
            {
                "subscriber_id": ids[row.key],
                "at": now,
                "action": "subscribed",
                "actor": actor,
                "new_status": status.value,
                "detail": f"imported (line {row.line})",
            }
            for row in new_rows
        ],
    )
    session.flush()


def default_report_path(source: Path) -> Path:
    return source.with_name(source.name + ".report.csv")


def import_csv(
    engine: Engine,
    settings: Settings,
    source: Path,
    *,
    confirmed: bool = False,
    update: bool = False,
    dry_run: bool = False,
    actor: str = "import",
    report_path: Path | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH_SIZE,
    stop_requested: Callable[[], bool] | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file; bad rows are skipped and reported, good rows land in batches.

    ``progress`` is called with the number of bytes read so far, after each committed batch.
    When ``stop_requested`` answers true after a batch, or on KeyboardInterrupt, the import stops
    with the committed batches kept and ``report.interrupted`` set; the same import run again
    completes it (rows already in are unchanged). The report file is written under a temporary
    name and moved into place at the end.
    """
    check_input_file(source)
    try:
        stream = source.open("rb")
    except OSError as exc:
        raise InvalidInput(f"{shown(source)}: cannot read ({exc.strerror})") from None
    report = ImportReport(dry_run=dry_run, report_path=report_path or default_report_path(source))
    seen = _SeenAddresses()
    report_file: IO[str] | None = None
    report_temporary: Path | None = None

    def write_problem(line: int, email: str, outcome: str, reason: str) -> None:
        nonlocal report_file, report_temporary
        if report_file is None:
            assert report.report_path is not None
            target = report.report_path
            try:
                handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            except OSError as exc:
                raise InvalidInput(f"{shown(target)}: cannot write the report ({exc.strerror})") from None
            report_temporary = Path(name)
            report_file = os.fdopen(handle, "w", encoding="utf-8", newline="")
            report_file.write("line,email,outcome,reason\n")
        csv.writer(report_file).writerow([line, *escape_row([email, outcome, reason])])

    def fail(line: int, raw_email: str, reason: str) -> None:
        report.note(line, raw_email, "error", reason)
        write_problem(line, raw_email, "error", reason)

    try:
        with stream:
            lines = _records(stream)
            layout: _CsvLayout | None = None
            for number, raw in lines:
                if raw is None:
                    raise InvalidInput(f"{shown(source)}: line {number}: the header line is too long")
                raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
                if b"\x00" in raw:
                    raise InvalidInput(f"{shown(source)}: a binary file, not UTF-8 text (export it as CSV first)")
                try:
                    header = _decode(raw)
                except UnicodeDecodeError:
                    raise InvalidInput(
                        f"{shown(source)}: not UTF-8 text (save the file as UTF-8 and try again)"
                    ) from None
                if header.strip():
                    layout = _CsvLayout(header)
                    break
            if layout is None:
                raise InvalidInput(f"{shown(source)}: the file is empty (expected a header line {','.join(COLUMNS)})")

            batch: list[_Row] = []
            decoded = undecodable = 0

            def flush() -> None:
                if not batch:
                    return
                counts, problems = dict(report.counts), len(report.problems)
                try:
                    with transaction(engine) as session:
                        _apply_batch(
                            session,
                            settings,
                            batch,
                            report,
                            write_problem,
                            confirmed=confirmed,
                            update=update,
                            actor=actor,
                        )
                        if dry_run:
                            session.rollback()
                except BaseException:
                    # The batch was rolled back: the report counts only what is in the database.
                    report.counts.update(counts)
                    del report.problems[problems:]
                    raise
                if not dry_run:
                    report.committed_rows += len(batch)
                    report.committed_line = batch[-1].line
                batch.clear()
                if progress is not None:
                    progress(stream.tell())

            for number, raw in lines:
                if raw is None:
                    fail(number, "", f"line longer than {MAX_LINE_BYTES // 1024} KB")
                    continue
                try:
                    text = _decode(raw)
                except UnicodeDecodeError:
                    fail(number, "", "not valid UTF-8")
                    undecodable += 1
                    continue
                decoded += 1
                if not text.strip():
                    continue
                try:
                    fields = layout.parse(text)
                    row = _validate(settings, number, fields)
                except (InvalidInput, csv.Error) as exc:
                    fail(number, _first_field(text, layout.delimiter), str(exc))
                    continue
                first = seen.first_line(row.key)
                if first is not None:
                    fail(number, row.email, f"duplicate of line {first}")
                    continue
                seen.add(row.key, number)
                batch.append(row)
                if len(batch) >= batch_size:
                    flush()
                    if stop_requested is not None and stop_requested():
                        report.interrupted = True
                        break
            if not report.interrupted:
                flush()
            if undecodable and not decoded:
                raise InvalidInput(f"{shown(source)}: not UTF-8 text (save the file as UTF-8 and try again)")
    except KeyboardInterrupt:
        report.interrupted = True
    except BaseException:
        # A failed import leaves no half-written report behind.
        if report_file is not None and report_temporary is not None:
            report_file.close()
            report_temporary.unlink(missing_ok=True)
            report_file = None
        raise
    finally:
        seen.close()
    if report_file is not None:
        # Written up to the last row read, also when interrupted: it lists the problems met so far.
        report_file.close()
        assert report_temporary is not None and report.report_path is not None
        report_temporary.replace(report.report_path)
    else:
        report.report_path = None
    return report


def _first_field(text: str, delimiter: str) -> str:
    return text.split(delimiter, 1)[0].strip().strip('"')[:320]


# ---------------------------------------------------------------------------
# Export


def export_rows(session: Session, query_filter: SubscriberFilter) -> Iterator[dict[str, str]]:
    for subscriber in iter_subscribers(session, query_filter):
        yield {
            "email": subscriber.email,
            "name": subscriber.name or "",
            "language": subscriber.language,
            "interests": ";".join(subscriber.interest_list),
        }


def write_export(
    engine: Engine,
    out: IO[str],
    *,
    fmt: Literal["csv", "json"] = "csv",
    query_filter: SubscriberFilter | None = None,
) -> int:
    """Stream subscribers to ``out`` as CSV or a JSON array; return how many were written."""
    count = 0
    with reading(engine) as session:
        rows = export_rows(session, query_filter or SubscriberFilter())
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({column: escape_cell(value) for column, value in row.items()})
                count += 1
        else:
            out.write("[")
            for row in rows:
                out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(row, ensure_ascii=False))
                count += 1
            out.write("\n]\n" if count else "]\n")
    return count


def export_to_file(
    engine: Engine,
    path: Path,
    *,
    fmt: Literal["csv", "json"] = "csv",
    query_filter: SubscriberFilter | None = None,
) -> int:
    """Export to ``path`` through a temporary file, so a failed export leaves no half-written file.

    The caller checks the path first (:func:`bulletin.paths.check_output_file`); a path that is
    not a regular file (``/dev/full``) is refused here too, since renaming over it would replace it.
    """
    if path.exists() and not path.is_file():
        raise InvalidInput(f"{shown(path)} is not a regular file (a folder, device or pipe): give a file name")
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InvalidInput(f"{shown(path)}: cannot write ({exc.strerror})") from None
    temporary = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            count = write_export(engine, out, fmt=fmt, query_filter=query_filter)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise InvalidInput(f"{shown(path)}: cannot write ({exc.strerror or exc}); nothing was changed") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count
