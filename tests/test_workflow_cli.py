"""The workflow commands: submit, approve, review, schedule, pause, resume, cancel, history."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select

from bulletin.app import workflow
from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import transaction
from bulletin.models import Delivery, EditionStatus, utcnow

from .factories import add_subscriber, migrated_engine, write_config
from .smtp_server import RecordingSMTPServer
from .workflow_fixtures import history, make_settings, seed, settings_data


@pytest.fixture
def setup(tmp_path: Path, smtp_server: RecordingSMTPServer) -> tuple[Path, Settings, Engine, int]:
    data = settings_data(tmp_path, smtp_server)
    config = write_config(tmp_path / "bulletin.toml", data)
    settings = make_settings(tmp_path, smtp_server)
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    return config, settings, engine, edition_id


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_staff_take_an_edition_to_scheduled_and_its_history_says_who_did_what(
    setup: tuple[Path, Settings, Engine, int],
) -> None:
    config, _, engine, edition_id = setup
    year = utcnow().year + 1
    run(config, "edition", "submit", str(edition_id), "--by", "marie")
    reopened = run(config, "edition", "reopen", str(edition_id), "--by", "marie", "--reason", "intro missing")
    assert f"Edition {edition_id} is a draft again." in reopened.output
    submitted = run(config, "edition", "submit", str(edition_id), "--by", "marie")
    assert submitted.exit_code == 0, submitted.output
    assert f"Edition {edition_id} is in review." in submitted.output
    approved = run(config, "edition", "approve", str(edition_id), "--by", "Ana Pérez")
    assert approved.exit_code == 0, approved.output
    assert f"Edition {edition_id} approved by Ana Pérez (5 variant(s) locked)." in approved.output
    scheduled = run(config, "edition", "schedule", str(edition_id), "--at", f"{year}-12-01 09:00", "--by", "ana")
    assert scheduled.exit_code == 0, scheduled.output
    assert f"scheduled for {year}-12-01 09:00 EST (America/Toronto), {year}-12-01 14:00 UTC" in scheduled.output
    paused = run(config, "edition", "pause", str(edition_id), "--reason", "wait for the report")
    assert paused.exit_code == 0, paused.output
    resumed = run(config, "edition", "resume", str(edition_id), "--by", "paul")
    assert f"Edition {edition_id} is scheduled again." in resumed.output

    shown = run(config, "edition", "history", str(edition_id))
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0] == f"Edition {edition_id}: scheduled, send time {year}-12-01 09:00 EST"
    assert "draft -> review     by marie  (submitted for review)" in lines[1]
    assert "review -> draft      by marie  (intro missing)" in lines[2]
    assert "draft -> review     by marie  (submitted for review)" in lines[3]
    assert "review -> approved   by Ana Pérez  (approved (1 of 1))" in lines[4]
    assert f"approved -> scheduled  by ana  (at {year}-12-01 09:00 EST)" in lines[5]
    assert "scheduled -> paused     by cli  (wait for the report)" in lines[6]
    assert "paused -> scheduled  by paul  (resumed)" in lines[7]
    assert lines[8] == "Approvals:"
    assert lines[9].endswith("Ana Pérez, 5 variant(s), valid")
    assert history(engine, edition_id)[-1] == ("paused", "scheduled", "paul")


def test_refusals_are_one_clear_line(setup: tuple[Path, Settings, Engine, int]) -> None:
    config, _, engine, edition_id = setup
    assert _one_line_error(run(config, "edition", "approve", str(edition_id), "--by", "ana")) == (
        f"Error: edition {edition_id} is draft: it cannot be approved "
        f"(submit it for review first: bulletin edition submit {edition_id})"
    )
    assert _one_line_error(run(config, "edition", "pause", "999")) == "Error: no edition 999"
    assert _one_line_error(run(config, "edition", "send", str(edition_id))).startswith(
        f"Error: edition {edition_id} is draft: it cannot start sending"
    )
    run(config, "edition", "submit", str(edition_id))
    run(config, "edition", "approve", str(edition_id), "--by", "ana")
    assert _one_line_error(run(config, "edition", "schedule", str(edition_id), "--at", "soon")) == (
        "Error: send time 'soon': expected a date and time like 2026-12-01 09:00 "
        "(--at 'YYYY-MM-DD HH:MM', in schedule.timezone)"
    )
    assert _one_line_error(run(config, "edition", "approve", str(edition_id), "--by", "ben")) == (
        f"Error: edition {edition_id} is already approved"
    )
    assert history(engine, edition_id) == [("draft", "review", "cli"), ("review", "approved", "ana")]


def test_a_refused_schedule_still_records_the_void_approval(setup: tuple[Path, Settings, Engine, int]) -> None:
    config, _, engine, edition_id = setup
    run(config, "edition", "submit", str(edition_id))
    run(config, "edition", "approve", str(edition_id), "--by", "ana")
    with transaction(engine) as session:
        add_subscriber(session, "rosa@example.org", "es", "drugs")
    result = run(config, "edition", "schedule", str(edition_id), "--at", f"{utcnow().year + 1}-01-05 09:00")
    assert result.exit_code == 1
    assert "es|drugs" in result.output and "back in review" in result.output
    with transaction(engine) as session:
        assert workflow.get_edition(session, edition_id).status is EditionStatus.REVIEW
        assert workflow.valid_approvals(session, edition_id) == []


def _subjects(messages: list[EmailMessage]) -> list[str]:
    return sorted(str(m["Subject"]) for m in messages)


def test_review_mails_each_reviewer_a_test_copy_of_every_variant_with_the_preview_index(
    setup: tuple[Path, Settings, Engine, int], smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    config, _, engine, edition_id = setup
    result = run(config, "edition", "review", str(edition_id), "--to", "rev1@example.org", "--to", "Rev2@Example.org")
    assert result.exit_code == 0, result.output
    index = tmp_path / "previews" / f"edition-{edition_id}" / "index.html"
    assert f"Preview index: {index}" in result.output
    assert index.is_file()
    messages = [m.parse() for m in smtp_server.wait_for(10)]
    assert len(messages) == 10
    assert (
        sorted(r for m in smtp_server.messages for r in m.recipients)
        == ["Rev2@example.org"] * 5 + ["rev1@example.org"] * 5
    )
    keys = sorted({str(m["X-Bulletin-Variant"]) for m in messages})
    assert keys == ["en|", "en|cities,youth", "es|", "fr|", "fr|youth"]
    for message in messages:
        text = message.get_body(("plain",))
        assert text is not None
        body = text.get_content()
        if str(message["X-Bulletin-Variant"]).startswith("en|"):
            assert str(message["Subject"]).startswith(f"[Test {message['X-Bulletin-Variant']}] ")
            assert f"Every variant: {index}" in body
            assert f"On the staff pages: https://news.example.org/staff/editions/{edition_id}" in body
        html = message.get_body(("html",))
        assert html is not None and f'href="{index.as_uri()}"' in html.get_content()
        assert "__BULLETIN_" not in body
        # A test copy is not a list message: nobody can unsubscribe from a review.
        assert message["List-Unsubscribe"] is None
    # The banner is in the language of the variant the reviewer reads.
    (spanish, _) = [m for m in messages if m["X-Bulletin-Variant"] == "es|"]
    assert str(spanish["Subject"]).startswith("[Prueba es|] ")
    spanish_text = spanish.get_body(("plain",))
    assert spanish_text is not None and f"Todas las variantes: {index}" in spanish_text.get_content()
    # The draft went to review, and nothing touched the delivery ledger.
    assert history(engine, edition_id) == [("draft", "review", "cli")]
    with transaction(engine) as session:
        assert session.scalar(select(func.count(Delivery.id))) == 0

    smtp_server.messages.clear()
    only_french = run(config, "edition", "review", str(edition_id), "--to", "rev1@example.org", "--variant", "fr")
    assert only_french.exit_code == 0, only_french.output
    assert "Sent 2 test message(s) of 2 variant(s)" in only_french.output
    assert {str(m.parse()["X-Bulletin-Variant"]) for m in smtp_server.messages} == {"fr|", "fr|youth"}
    one = run(config, "edition", "review", str(edition_id), "--to", "a@example.org", "--variant", "en|youth,cities")
    assert "Sent 1 test message(s) of 1 variant(s)" in one.output

    unknown = _one_line_error(
        run(config, "edition", "review", str(edition_id), "--to", "a@example.org", "--variant", "de")
    )
    assert unknown.startswith("Error: variant 'de': no such variant (this edition has en|, en|cities,youth")
    bad = _one_line_error(run(config, "edition", "review", str(edition_id), "--to", "not-an-address"))
    assert bad.startswith("Error: ")


def test_review_says_which_reviewer_the_server_refused_and_when_it_is_unreachable(
    setup: tuple[Path, Settings, Engine, int], smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    config, _, _, edition_id = setup
    smtp_server.faults.rcpt_replies["gone@example.org"] = "550 5.1.1 no such user"
    refused = _one_line_error(
        run(config, "edition", "review", str(edition_id), "--to", "gone@example.org", "--to", "desk@example.org")
    )
    assert refused.startswith("Error: sent 5 test message(s), but the server refused gone@example.org (550")
    assert sorted(smtp_server.recipients()) == ["desk@example.org"] * 5

    unreachable = write_config(tmp_path / "down.toml", settings_data(tmp_path, None))
    down = _one_line_error(run(unreachable, "edition", "review", str(edition_id), "--to", "desk@example.org"))
    assert down.startswith("Error: test send to desk@example.org failed after 0 message(s): ")


def test_excluding_an_item_of_an_approved_edition_sends_it_back_to_review_at_once(
    setup: tuple[Path, Settings, Engine, int],
) -> None:
    config, _, engine, edition_id = setup
    run(config, "edition", "submit", str(edition_id))
    run(config, "edition", "approve", str(edition_id), "--by", "ana")
    with transaction(engine) as session:
        item_id = workflow.get_edition(session, edition_id).items[0].news_item_id
    result = run(config, "edition", "items", str(edition_id), "--exclude", str(item_id))
    assert result.exit_code == 0, result.output
    assert "it is back in review" in result.output
    with transaction(engine) as session:
        assert workflow.get_edition(session, edition_id).status is EditionStatus.REVIEW
        assert workflow.valid_approvals(session, edition_id) == []
