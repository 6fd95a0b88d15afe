"""CSV import and export: bad rows reported, good rows kept, idempotent, streamed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select

from bulletin.app.subscriber_files import import_csv
from bulletin.app.subscribers import erase_subscriber, find_subscriber
from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import make_engine, reading, transaction
from bulletin.migrate import upgrade
from bulletin.models import Subscriber, SubscriberStatus

HEADER = "email,name,language,interests\n"


def write_csv(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def emails(engine: Engine) -> list[str]:
    with reading(engine) as session:
        return list(session.scalars(select(Subscriber.email).order_by(Subscriber.id)))


@pytest.fixture
def run(settings: Settings, engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "bulletin.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n', encoding="utf-8")

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args])

    return invoke


def test_bad_rows_are_reported_and_the_rest_imports(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    huge = "h" * (10 * 1024 * 1024)
    text = (
        HEADER
        + "ana@example.org,Ana,es,youth;cities\n"
        + "a@b,Bad,fr,\n"  # 3: no dot in the domain
        + "x@@y.org,Bad,fr,\n"  # 4
        + '"Name <n@example.org>",Bad,fr,\n'  # 5
        + "  spaced@example.org  ,Spaced,en,\n"  # 6: surrounding spaces are trimmed
        + "\n"  # 7: empty line ignored
        + "a" * 300
        + "@example.org,Long,fr,\n"  # 8
        + "lang@example.org,Lang,de,\n"  # 9
        + "topic@example.org,Topic,fr,astrology\n"  # 10
        + "ANA@Example.org,Ana again,es,youth\n"  # 11: duplicate of line 2, case aside
        + huge
        + "@example.org,Huge,fr,\n"  # 12: a 10 MB line
        + "li@example.org,Li,en,research|policing\n"  # 13
    )
    source = write_csv(tmp_path / "people.csv", text)
    report = import_csv(engine, settings, source)

    assert emails(engine) == ["ana@example.org", "spaced@example.org", "li@example.org"]
    assert report.counts["added"] == 3
    assert report.counts["error"] == 8
    reasons = {line: reason for line, _email, reason in report.problems}
    assert sorted(reasons) == [3, 4, 5, 8, 9, 10, 11, 12]
    assert "unknown language 'de'" in reasons[9]
    assert "unknown interest 'astrology'" in reasons[10]
    assert reasons[11] == "duplicate of line 2"
    assert "longer than" in reasons[12]
    assert report.report_path is not None
    report_lines = report.report_path.read_text(encoding="utf-8").splitlines()
    assert report_lines[0] == "line,email,outcome,reason" and len(report_lines) == 9
    with reading(engine) as session:
        li = find_subscriber(session, "li@example.org")
        assert li is not None and li.interests == "policing,research" and li.status == SubscriberStatus.PENDING


def test_reimporting_the_same_file_changes_nothing(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "p.csv", HEADER + "a@example.org,A,fr,youth\nb@example.org,B,en,\n")
    first = import_csv(engine, settings, source, confirmed=True)
    second = import_csv(engine, settings, source, confirmed=True)
    assert first.counts["added"] == 2
    assert second.counts == {"added": 0, "updated": 0, "unchanged": 2, "suppressed": 0, "error": 0}
    with reading(engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 2


def test_update_overwrites_language_and_interests_but_never_status(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    write_csv(tmp_path / "v1.csv", HEADER + "a@example.org,A,fr,youth\n")
    import_csv(engine, settings, tmp_path / "v1.csv", confirmed=True)
    with transaction(engine) as session:
        subscriber = find_subscriber(session, "a@example.org")
        assert subscriber is not None
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
    write_csv(tmp_path / "v2.csv", HEADER + "a@example.org,A,en,cities\n")
    without = import_csv(engine, settings, tmp_path / "v2.csv", confirmed=True)
    assert without.counts["unchanged"] == 1
    updated = import_csv(engine, settings, tmp_path / "v2.csv", confirmed=True, update=True)
    assert updated.counts["updated"] == 1
    with reading(engine) as session:
        subscriber = find_subscriber(session, "a@example.org")
        assert subscriber is not None
        assert (subscriber.language, subscriber.interests) == ("en", "cities")
        assert subscriber.status == SubscriberStatus.UNSUBSCRIBED


def test_semicolon_delimiter_bom_and_column_order(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "excel.csv",
        "Interests;Language;EMAIL;Name\r\nyouth|cities;es;josé@example.org;José Núñez\r\n",
        bom=True,
    )
    report = import_csv(engine, settings, source, confirmed=True)
    assert report.counts["added"] == 1
    with reading(engine) as session:
        subscriber = find_subscriber(session, "josé@example.org")
        assert subscriber is not None
        assert (subscriber.name, subscriber.language, subscriber.interests) == ("José Núñez", "es", "cities,youth")
        assert subscriber.status == SubscriberStatus.ACTIVE


def test_dry_run_reports_without_writing(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "p.csv", HEADER + "a@example.org,A,fr,\nbad,B,fr,\n")
    report = import_csv(engine, settings, source, dry_run=True)
    assert report.counts["added"] == 1 and report.counts["error"] == 1
    assert emails(engine) == []


def test_erased_addresses_are_skipped_as_suppressed(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "p.csv", HEADER + "gone@example.org,G,fr,\nstay@example.org,S,fr,\n")
    import_csv(engine, settings, source)
    with transaction(engine) as session:
        erase_subscriber(session, "gone@example.org")
    report = import_csv(engine, settings, source)
    assert report.counts["suppressed"] == 1 and report.counts["unchanged"] == 1
    assert emails(engine) == ["stay@example.org"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"name,language\nAna,es\n", "no 'email' column"),
        ("email,name\nzoë@example.org,Zoë\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_unusable_files_are_refused_with_one_line(
    run, engine: Engine, tmp_path: Path, content: bytes, message: str
) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "bad.csv"
    source.write_bytes(content)
    result = run("subscribers", "import", str(source))
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert emails(engine) == []


def test_a_latin1_row_in_a_utf8_file_is_skipped_alone(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "mixed.csv"
    source.write_bytes(HEADER.encode() + "zoë@example.org,Zoë,fr,\n".encode("latin-1") + b"ok@example.org,Ok,fr,\n")
    report = import_csv(engine, settings, source)
    assert report.problems == [(2, "", "not valid UTF-8")]
    assert emails(engine) == ["ok@example.org"]


def test_cli_import_prints_problems_and_summary(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(tmp_path / "p.csv", HEADER + "a@example.org,A,fr,\nnot-an-address,B,fr,\n")
    result = run("subscribers", "import", str(source))
    assert result.exit_code == 0, result.output
    assert "line 3: not-an-address:" in result.output
    assert "1 added" in result.output and "1 rejected" in result.output
    assert f"Problems written to {tmp_path / 'p.csv.report.csv'}" in result.output


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_import_export_is_identical(run, settings: Settings, tmp_path: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    sample = Path(__file__).parents[1] / "samples" / "subscribers.csv"
    assert run("subscribers", "import", str(sample), "--confirmed").exit_code == 0
    first = tmp_path / f"first.{fmt}"
    assert run("subscribers", "export", str(first)).exit_code == 0
    if fmt == "json":
        rows = json.loads(first.read_text(encoding="utf-8"))
        assert len(rows) == 320 and set(rows[0]) == {"email", "name", "language", "interests"}

    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    csv_copy = tmp_path / "first-copy.csv"
    run("subscribers", "export", str(csv_copy))
    import_csv(other, settings, csv_copy, confirmed=True)
    config = tmp_path / "other.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "other.db"}"\n', encoding="utf-8")
    second = tmp_path / f"second.{fmt}"
    result = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "export", str(second)])
    assert result.exit_code == 0
    assert first.read_bytes() == second.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_quoted_field_may_hold_a_line_break(settings: Settings, engine: Engine, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "sheet.csv",
        HEADER
        + 'ann@example.org,"Ann\nBob",en,youth\n'  # lines 2-3: one record
        + 'open@example.org,"never closed,fr,\n'  # 4: unterminated, reported alone
        + "next@example.org,Next,fr,\n",  # 5: still imported
    )
    report = import_csv(engine, settings, source)
    assert emails(engine) == ["ann@example.org", "next@example.org"]
    assert [line for line, _email, _reason in report.problems] == [4]
    with reading(engine) as session:
        ann = find_subscriber(session, "ann@example.org")
        assert ann is not None and ann.name == "Ann Bob"
