"""Signed links and the opt-in (issue 13, findings 3 and 5, and the display-name rules).

An erased person's old links must not come back, a stranger's request must not change anyone's
record before the owner follows the link, and display names are plain text everywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bulletin.app.subscribers import erase_subscriber, find_subscriber
from bulletin.cli import cli
from bulletin.db import reading, transaction
from bulletin.models import RateEvent, Subscriber, SubscriberStatus

from .factories import write_config
from .web_support import (
    WebEnv,
    add_subscriber_row,
    csrf_of,
    received_links,
    subscriber_state,
    token_of,
    web_env,  # noqa: F401  (the web fixture)
)

HOSTILE_NAME = "WIN A PRIZE at https://prize.example"


def subscribe(web: WebEnv, email: str, *, name: str = "", language: str = "fr", interests: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    page = web.client.get("/subscribe")
    data = {"email": email, "name": name, "language": language, "interests": list(interests)}
    data["csrf_token"] = csrf_of(page.text)
    return web.client.post("/subscribe", data=data)


def confirm(web: WebEnv, link: str) -> int:
    """Follow a confirmation link (the page, then a POST as its button sends, even if the page shows none)."""
    path = "/confirm/" + link.rsplit("/confirm/", 1)[1]
    page = web.client.get(path)
    if page.status_code != 200:
        return page.status_code
    csrf = csrf_of(web.client.get("/subscribe").text)
    return web.client.post(path, data={"csrf_token": csrf}).status_code


def subscriber_total(web: WebEnv) -> int:
    with reading(web.engine) as session:
        return int(session.scalar(select(func.count()).select_from(Subscriber)) or 0)


@pytest.mark.parametrize("status", [SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED])
def test_a_strangers_request_changes_nothing_until_the_owner_confirms(web: WebEnv, status: SubscriberStatus) -> None:
    """Finding 3: a request for a pending or unsubscribed address replaced their name, language and topics."""
    add_subscriber_row(web.engine, "ines@example.org", status=status, language="es", interests="youth", name="Inès")
    before = subscriber_state(web.engine, "ines@example.org")
    assert before is not None

    subscribe(web, "ines@example.org", name=HOSTILE_NAME, language="fr", interests=("cities",))

    after = subscriber_state(web.engine, "ines@example.org")
    assert after is not None
    assert (after.status, after.name, after.language, after.interests, after.updated_at) == (
        before.status,
        "Inès",
        "es",
        "youth",
        before.updated_at,
    )
    message = web.smtp.wait_for(1)[0].parse()
    body = message.get_body(("plain",))
    assert body is not None and HOSTILE_NAME not in body.get_content()
    assert HOSTILE_NAME not in str(message["To"])
    # The owner's own link applies the request (it was theirs after all) and only then.
    assert confirm(web, next(link for link in received_links(web.smtp) if "/confirm/" in link)) == 200
    confirmed = subscriber_state(web.engine, "ines@example.org")
    assert confirmed is not None
    assert (confirmed.status, confirmed.language, confirmed.interests) == (SubscriberStatus.ACTIVE, "fr", "cities")


def test_a_confirmation_link_stops_working_once_the_subscriber_changed(web: WebEnv) -> None:
    add_subscriber_row(web.engine, "ines@example.org", status=SubscriberStatus.UNSUBSCRIBED, language="es")
    subscribe(web, "ines@example.org", language="fr")
    (link,) = [link for link in received_links(web.smtp) if "/confirm/" in link]
    assert confirm(web, link) == 200
    # She leaves again; the week-old link in her mailbox must not bring her back.
    with transaction(web.engine) as session:
        subscriber = find_subscriber(session, "ines@example.org")
        assert subscriber is not None
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
    confirm(web, link)
    subscriber = subscriber_state(web.engine, "ines@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.UNSUBSCRIBED


def links_in_last_email(web: WebEnv, path: str) -> str:
    (link,) = [link for link in received_links(web.smtp) if path in link]
    return "/" + link.split("/", 3)[3]


def test_erase_then_subscribe_again_old_links_are_refused(web: WebEnv) -> None:
    """Finding 5: the reused id made the erased person's old preferences and confirm links work again."""
    add_subscriber_row(web.engine, "first@example.org")
    # Her links come from her own emails: the confirmation, then "you are already subscribed".
    subscribe(web, "gone@example.org", name="Gone")
    old_confirm = links_in_last_email(web, "/confirm/")
    assert confirm(web, old_confirm) == 200
    subscribe(web, "gone@example.org")
    old_preferences = links_in_last_email(web, "/preferences/")
    assert web.client.get(old_preferences).status_code == 200
    gone = subscriber_state(web.engine, "gone@example.org")
    assert gone is not None
    old_id = gone.id
    with transaction(web.engine) as session:
        erase_subscriber(session, "gone@example.org")

    subscribe(web, "gone@example.org", name="Back")
    new_confirm = links_in_last_email(web, "/confirm/")
    # The old links name nobody, before and after the new confirmation...
    for path in (old_preferences, old_confirm):
        assert web.client.get(path).status_code == 400, path
    # ...and subscribing again after erasure stores nothing until the new link is followed.
    assert subscriber_state(web.engine, "gone@example.org") is None
    csrf = csrf_of(web.client.get("/subscribe").text)
    refused = web.client.post(old_preferences, data={"csrf_token": csrf, "action": "resubscribe"})
    assert refused.status_code == 400
    assert subscriber_state(web.engine, "gone@example.org") is None
    assert confirm(web, new_confirm) == 200
    back = subscriber_state(web.engine, "gone@example.org")
    assert back is not None and back.status == SubscriberStatus.ACTIVE and back.name == "Back"
    assert back.id != old_id
    for path in (old_preferences, old_confirm):
        assert web.client.get(path).status_code == 400, path
    # The confirmation of an erased address works once: it does not survive a second erasure.
    with transaction(web.engine) as session:
        erase_subscriber(session, "gone@example.org")
    assert confirm(web, new_confirm) == 400
    assert subscriber_state(web.engine, "gone@example.org") is None


def test_an_erased_address_leaves_no_unsalted_hash(web: WebEnv) -> None:
    """Finding 7: rate_events kept sha256(address) of an erased person."""
    import hashlib

    subscribe(web, "gone@example.org")
    with transaction(web.engine) as session:
        erase_subscriber(session, "gone@example.org")
    plain = hashlib.sha256(b"gone@example.org").hexdigest()
    with reading(web.engine) as session:
        keys = list(session.scalars(select(RateEvent.key)))
        everything = " ".join(str(row) for row in session.execute(select(RateEvent.kind, RateEvent.key)))
    assert plain not in keys and plain not in everything
    with reading(web.engine) as session:
        kinds = set(session.scalars(select(RateEvent.kind)))
    assert "optin-address" not in kinds


def test_rotate_links_revokes_every_earlier_link(web: WebEnv, tmp_path: Path) -> None:
    subscriber_id = add_subscriber_row(web.engine, "ana@example.org")
    old = "/preferences/" + token_of(web, "preferences", subscriber_id, "ana@example.org")
    assert web.client.get(old).status_code == 200
    config = write_config(tmp_path / "bulletin.toml", {"database": {"url": web.settings.database_url}})
    result = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "rotate-links", "ANA@example.org"])
    assert result.exit_code == 0, result.output
    assert "earlier ones no longer work" in result.output
    assert web.client.get(old).status_code == 400
    new = "/preferences/" + token_of(web, "preferences", subscriber_id, "ana@example.org")
    assert new != old and web.client.get(new).status_code == 200
    missing = CliRunner().invoke(cli, ["--config", str(config), "subscribers", "rotate-links", "no@example.org"])
    assert missing.exit_code != 0 and "no subscriber" in missing.output


@pytest.mark.parametrize(
    "name",
    ["é <attacker@evil.example> (", "x@evil.example", "Zoé\u202eevil", "line\x00break", "n" * 101],
)
def test_display_names_are_plain_text_in_the_web_form(web: WebEnv, name: str) -> None:
    response = subscribe(web, "zoe@example.org", name=name)
    assert response.status_code == 400
    assert "sans &lt;, &gt; ni @" in response.text
    assert subscriber_total(web) == 0 and web.smtp.messages == []


def test_display_names_are_plain_text_in_the_cli_and_imports(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bulletin.toml", {"database": {"url": f"sqlite:///{tmp_path / 'n.db'}"}})
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "db", "upgrade"]).exit_code == 0
    result = runner.invoke(
        cli,
        [
            "--config",
            str(config),
            "subscribers",
            "add",
            "zoe@example.org",
            "--lang",
            "fr",
            "--name",
            "é <attacker@evil.example>",
        ],
    )
    assert result.exit_code != 0
    assert "must not contain <, > or @" in result.output and "Traceback" not in result.output
    people = tmp_path / "people.csv"
    people.write_text(
        "email,name,language\nok@example.org,Ana Pérez,es\nbad@example.org,Bad <x@evil.example>,fr\n", encoding="utf-8"
    )
    imported = runner.invoke(cli, ["--config", str(config), "subscribers", "import", str(people), "--confirmed"])
    assert "must not contain <, > or @" in imported.output, imported.output
    listed = runner.invoke(cli, ["--config", str(config), "subscribers", "list"])
    assert "ok@example.org" in listed.output and "bad@example.org" not in listed.output
