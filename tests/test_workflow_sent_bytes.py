"""What the SMTP server receives is the approved rendering, byte for byte, but for the per-recipient values."""

from __future__ import annotations

import html
from pathlib import Path

from sqlalchemy import select

from bulletin.app import workflow
from bulletin.app.links import subscriber_url
from bulletin.compose import placeholders
from bulletin.compose.approval import approve
from bulletin.compose.checks import content_hash
from bulletin.compose.variants import subscriber_variant, variant_key
from bulletin.db import transaction
from bulletin.models import EditionVariant, Subscriber
from bulletin.mta.sender import send_edition

from .factories import migrated_engine
from .smtp_server import RecordingSMTPServer
from .workflow_fixtures import make_settings, seed


def _fill(body: str, marker: str, *, name: str | None, unsubscribe: str, preferences: str, as_html: bool) -> str:
    """The approved body with one recipient's values in place of the slots."""
    escape = (lambda value: html.escape(value, quote=True)) if as_html else (lambda value: value)
    return (
        body.replace(placeholders.slot(marker, placeholders.NAME), escape(" " + name) if name else "")
        .replace(placeholders.slot(marker, placeholders.UNSUBSCRIBE_URL), escape(unsubscribe))
        .replace(placeholders.slot(marker, placeholders.PREFERENCES_URL), escape(preferences))
    )


def test_each_message_received_is_the_approved_variant_with_only_the_recipient_values_filled(
    tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    settings = make_settings(tmp_path, smtp_server)
    engine = migrated_engine(settings)
    edition_id = seed(engine, settings)["edition"]
    with transaction(engine) as session:
        workflow.submit(session, edition_id, "marie")
    approval = approve(engine, settings, edition_id, "ana")
    with transaction(engine) as session:
        approved = {
            variant_key(v.language, v.interests): (v.subject, v.html, v.text)
            for v in session.scalars(select(EditionVariant).where(EditionVariant.edition_id == edition_id))
        }
        people = {s.email: s for s in session.scalars(select(Subscriber))}
        marker = placeholders.edition_marker(session, edition_id)
    # The stored rendering is the one approved: its hashes are the approval's.
    assert {key: content_hash(*parts) for key, parts in approved.items()} == approval.variant_hashes

    outcome = send_edition(engine, settings, edition_id, actor="test", worker="test")
    assert outcome.status is workflow.S.SENT
    received = smtp_server.wait_for(len(people))
    assert len(received) == len(people)

    for message in received:
        (address,) = message.recipients
        person = people[address]
        key = variant_key(*subscriber_variant(settings, person.language, person.interests))
        subject, approved_html, approved_text = approved[key]
        parsed = message.parse()
        assert parsed["Subject"] == subject
        text_part = parsed.get_body(("plain",))
        html_part = parsed.get_body(("html",))
        assert text_part is not None and html_part is not None
        values = {
            "name": person.name,
            "unsubscribe": subscriber_url(settings, "unsubscribe", person.id, person.email, person.link_nonce),
            "preferences": subscriber_url(settings, "preferences", person.id, person.email, person.link_nonce),
        }
        # Text travels with CRLF line ends (MIME canonical form); stored renderings use LF.
        sent_text = text_part.get_content().replace("\r\n", "\n")
        sent_html = html_part.get_content().replace("\r\n", "\n")
        if not approved_html.endswith("\n"):
            # A MIME part ends with a line break before the next boundary; it is not content.
            sent_html = sent_html.removesuffix("\n")
        # The recipient's own values are in the message...
        assert values["unsubscribe"] in sent_text
        if person.name:
            assert person.name in sent_text
        # ...and apart from them, what was sent is exactly what was approved.
        assert sent_text == _fill(approved_text, marker, as_html=False, **values)
        assert sent_html == _fill(approved_html, marker, as_html=True, **values)
        assert "__BULLETIN_" not in sent_html + sent_text
    engine.dispose()
