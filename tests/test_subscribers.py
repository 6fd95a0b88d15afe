"""The subscriber store and its admin commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select

from bulletin.app.subscribers import (
    add_subscriber,
    erase_subscriber,
    find_subscriber,
    is_suppressed,
    normalize_email,
    set_status,
    subscriber_stats,
    update_subscriber,
)
from bulletin.cli import cli
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import Conflict, InvalidInput
from bulletin.models import Subscriber, SubscriberEvent, SubscriberStatus, Suppression


@pytest.mark.parametrize(
    "bad",
    ["a@b", "x@@y.org", "Name <a@b.org>", "a b@example.org", "", "   ", "a" * 300 + "@example.org", "@example.org"],
)
def test_malformed_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_email(bad)


def test_addresses_are_unique_whatever_their_case(any_settings: Settings, any_engine: Engine) -> None:
    with transaction(any_engine) as session:
        add_subscriber(session, any_settings, "Ana.Perez@Example.org", language="es", interests=["youth"])
    with pytest.raises(Conflict), transaction(any_engine) as session:
        add_subscriber(session, any_settings, "ana.perez@example.ORG", language="es")
    with reading(any_engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
        found = find_subscriber(session, "ANA.PEREZ@example.org")
        assert found is not None and found.status == SubscriberStatus.PENDING


def test_every_status_change_appends_an_event(any_settings: Settings, any_engine: Engine) -> None:
    with transaction(any_engine) as session:
        subscriber = add_subscriber(session, any_settings, "li@example.org", language="en", confirmed=True)
        set_status(session, subscriber, SubscriberStatus.UNSUBSCRIBED, "test")
        set_status(session, subscriber, SubscriberStatus.UNSUBSCRIBED, "test")  # no change, no event
        update_subscriber(session, any_settings, subscriber, actor="test", interests=["cities", "youth"])
    with reading(any_engine) as session:
        events = session.scalars(select(SubscriberEvent).order_by(SubscriberEvent.id)).all()
        assert [(e.action, e.old_status, e.new_status) for e in events] == [
            ("subscribed", None, "active"),
            ("status", "active", "unsubscribed"),
            ("updated", None, None),
        ]
        assert all(e.actor == "test" for e in events[1:])


def test_unknown_language_or_interest_is_refused(any_settings: Settings, any_engine: Engine) -> None:
    with pytest.raises(InvalidInput, match="unknown language 'de'"), transaction(any_engine) as session:
        add_subscriber(session, any_settings, "a@example.org", language="de")
    with pytest.raises(InvalidInput, match="unknown interest 'astrology'"), transaction(any_engine) as session:
        add_subscriber(session, any_settings, "a@example.org", language="fr", interests=["astrology"])
    with reading(any_engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_erase_keeps_only_a_salted_hash(any_settings: Settings, any_engine: Engine) -> None:
    with transaction(any_engine) as session:
        add_subscriber(session, any_settings, "gone@example.org", language="fr", name="Gone Person")
    with transaction(any_engine) as session:
        erase_subscriber(session, "GONE@example.org")
    with reading(any_engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert session.scalar(select(func.count()).select_from(SubscriberEvent)) == 0
        digest = session.scalars(select(Suppression.email_hash)).one()
        assert "gone" not in digest and len(digest) == 64
        assert is_suppressed(session, "gone@example.org")
    # An explicit add lifts the suppression.
    with transaction(any_engine) as session:
        add_subscriber(session, any_settings, "gone@example.org", language="fr")
    with reading(any_engine) as session:
        assert not is_suppressed(session, "gone@example.org")


def test_stats_count_by_status_language_and_interest(settings: Settings, engine: Engine) -> None:
    with transaction(engine) as session:
        add_subscriber(session, settings, "a@example.org", language="fr", interests=["youth", "cities"], confirmed=True)
        add_subscriber(session, settings, "b@example.org", language="fr", interests=["youth"], confirmed=True)
        add_subscriber(session, settings, "c@example.org", language="es")
    with reading(engine) as session:
        assert subscriber_stats(session) == [
            ("active", "fr", "cities", 1),
            ("active", "fr", "youth", 2),
            ("pending", "es", "(all topics)", 1),
        ]


# ---------------------------------------------------------------------------
# The command line


@pytest.fixture
def run(settings: Settings, engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "bulletin.toml"
    config.write_text(f'[database]\nurl = "{settings.database.url}"\n', encoding="utf-8")

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args], input=input)

    return invoke


def test_cli_add_show_set_remove(run, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    result = run("subscribers", "add", "Marie@Example.org", "--name", "Marie", "--lang", "fr", "--interest", "youth")
    assert result.exit_code == 0, result.output
    assert "pending" in result.output

    result = run("subscribers", "set", "marie@example.org", "--interest", "cities", "--interest", "youth")
    assert result.exit_code == 0 and "interests youth -> cities,youth" in result.output
    result = run("subscribers", "set", "marie@example.org", "--status", "active")
    assert result.exit_code == 0

    data = json.loads(run("subscribers", "show", "marie@example.org", "--json").output)
    assert data["interests"] == ["cities", "youth"]
    assert data["status"] == "active"
    assert [e["action"] for e in data["events"]] == ["subscribed", "updated", "status"]

    assert run("subscribers", "remove", "MARIE@example.org").exit_code == 0
    with reading(engine) as session:
        subscriber = find_subscriber(session, "marie@example.org")
        assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["subscribers", "add", "a@b", "--lang", "fr"], "invalid email address"),
        (["subscribers", "add", "ok@example.org", "--lang", "xx"], "unknown language 'xx'"),
        (["subscribers", "add", "ok@example.org", "--lang", "fr", "--interest", "nope"], "unknown interest 'nope'"),
        (["subscribers", "show", "nobody@example.org"], "no subscriber with address"),
        (["subscribers", "set", "nobody@example.org", "--lang", "fr"], "no subscriber with address"),
        (["subscribers", "erase", "nobody@example.org", "--yes"], "no subscriber with address"),
        (["subscribers", "list", "--lang", "xx"], "unknown language 'xx'"),
        (["subscribers", "list", "--interest", "nope"], "unknown interest 'nope'"),
    ],
)
def test_cli_errors_are_one_line_and_change_nothing(run, engine: Engine, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = run(*args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    with reading(engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_cli_list_filters_and_json(run) -> None:  # type: ignore[no-untyped-def]
    run("subscribers", "add", "a@example.org", "--lang", "fr", "--interest", "youth", "--confirmed")
    run("subscribers", "add", "b@example.org", "--lang", "en", "--interest", "cities", "--confirmed")
    run("subscribers", "add", "c@example.org", "--lang", "fr")
    rows = json.loads(run("subscribers", "list", "--lang", "fr", "--json").output)
    assert [r["email"] for r in rows] == ["a@example.org", "c@example.org"]
    rows = json.loads(run("subscribers", "list", "--interest", "youth", "--status", "active", "--json").output)
    assert [r["email"] for r in rows] == ["a@example.org"]
    assert json.loads(run("subscribers", "list", "--status", "bounced", "--json").output) == []
    table = run("subscribers", "list").output
    assert "b@example.org" in table and "3 subscriber(s)" in table
    stats = json.loads(run("subscribers", "stats", "--json").output)
    assert {"status": "pending", "language": "fr", "interest": "(all topics)", "count": 1} in stats


def test_cli_erase_asks_then_removes_everything(run, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    run("subscribers", "add", "x@example.org", "--lang", "fr")
    result = run("subscribers", "erase", "x@example.org", input="n\n")
    assert result.exit_code == 1
    with reading(engine) as session:
        assert find_subscriber(session, "x@example.org") is not None
    result = run("subscribers", "erase", "x@example.org", input="y\n")
    assert result.exit_code == 0
    with reading(engine) as session:
        assert find_subscriber(session, "x@example.org") is None


def test_an_unconfirmed_request_does_not_lift_an_erasure_until_confirmed(settings: Settings, engine: Engine) -> None:
    from bulletin.app.subscribers import confirm_subscriber

    with transaction(engine) as session:
        add_subscriber(session, settings, "back@example.org", language="fr")
    with transaction(engine) as session:
        erase_subscriber(session, "back@example.org")
    with transaction(engine) as session:
        add_subscriber(session, settings, "back@example.org", language="fr", source="web", actor="web")
    with reading(engine) as session:
        assert is_suppressed(session, "back@example.org")
    with transaction(engine) as session:
        subscriber = find_subscriber(session, "back@example.org")
        assert subscriber is not None
        confirm_subscriber(session, subscriber, actor="web", ip="192.0.2.1")
    with reading(engine) as session:
        assert not is_suppressed(session, "back@example.org")
