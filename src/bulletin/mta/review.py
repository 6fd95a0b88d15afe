"""Test copies of an edition's variants for reviewers, with a banner linking the previews."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bulletin.compose import placeholders
from bulletin.compose.render import render_edition
from bulletin.compose.variants import variant_key
from bulletin.config import Settings
from bulletin.errors import BulletinError, Conflict, InvalidInput

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bulletin.models import EditionVariant

from bulletin.app.workflow import S, get_edition, list_keys, transition
from bulletin.compose.preview import preview_link

log = logging.getLogger(__name__)


@dataclass
class ReviewOutcome:
    """What ``edition review`` sent."""

    edition_id: int
    recipients: list[str]
    variants: int
    messages: int
    preview_index: str
    failures: list[str] = field(default_factory=list)


def select_variants(variants: list[EditionVariant], wanted: list[str]) -> list[EditionVariant]:
    """The variants named by ``fr`` (every French one) or ``fr|cities,youth`` (that one); all if none named."""
    if not wanted:
        return list(variants)
    chosen: dict[int, EditionVariant] = {}
    for name in wanted:
        language, bar, interests = name.strip().partition("|")
        key_interests = ",".join(sorted({k.strip() for k in interests.split(",") if k.strip()}))
        matches = [v for v in variants if v.language == language and (not bar or v.interests == key_interests)]
        if not matches:
            known = list_keys(sorted(variant_key(v.language, v.interests) for v in variants), limit=6)
            raise InvalidInput(f"--variant {name!r}: no such variant (this edition has {known or 'none'})")
        chosen.update((v.id, v) for v in matches)
    return [v for v in variants if v.id in chosen]


@dataclass(frozen=True)
class _TestCopy:
    key: str
    subject: str
    html: str
    text: str
    marker: str


def _fill_for_review(settings: Settings, body: str, marker: str, *, html: bool) -> str:
    values = placeholders.sample_values(settings.web.base_url, None, "test-send")
    return placeholders.fill(body, marker, values, html=html)


_BODY_TAG = re.compile(r"<body[^>]*>", re.IGNORECASE)


def _with_banner(copy: _TestCopy, preview_index: str, staff_url: str) -> tuple[str, str]:
    """The test copy's HTML and text with a banner naming the variant and linking the previews."""
    import html as html_lib
    from pathlib import Path

    note = f"Test send of variant {copy.key}: not sent to subscribers."
    text = f"{note}\nEvery variant: {preview_index}\nOn the staff pages: {staff_url}\n\n{copy.text}"
    index_uri = Path(preview_index).as_uri() if Path(preview_index).is_absolute() else preview_index
    banner = (
        '<div style="background:#fff3cd;color:#5c4400;padding:12px;font:14px sans-serif;">'
        f"{html_lib.escape(note)} "
        f'<a href="{html_lib.escape(index_uri, quote=True)}">Preview every variant</a> · '
        f'<a href="{html_lib.escape(staff_url, quote=True)}">Staff pages</a></div>'
    )
    match = _BODY_TAG.search(copy.html)
    at = match.end() if match else 0
    return copy.html[:at] + banner + copy.html[at:], text


def send_review(
    engine: Engine,
    settings: Settings,
    edition_id: int,
    recipients: list[str],
    *,
    variants: list[str] | None = None,
    actor: str = "cli",
) -> ReviewOutcome:
    """Send each reviewer a test copy of every variant (or the named ones) with a link to the previews.

    A draft is rendered and moves to review; an approved edition's stored rendering is sent as is.
    Test copies never touch the delivery ledger.
    """
    from email.utils import make_msgid

    from bulletin.app.subscribers import normalize_email
    from bulletin.db import transaction
    from bulletin.mta.mail import DkimSigner, build_message, sender_domain
    from bulletin.mta.smtp import SmtpFailure, SmtpTransport

    addresses = list(dict.fromkeys(normalize_email(r) for r in recipients))
    if not addresses:
        raise InvalidInput("name at least one reviewer address")
    with transaction(engine) as session:
        edition = get_edition(session, edition_id)
        if edition.status is S.CANCELLED:
            raise Conflict(f"edition {edition.id} was cancelled: there is nothing to review")
        if edition.status in (S.DRAFT, S.REVIEW):
            render_edition(session, settings, edition)
            session.flush()
            session.refresh(edition, ["variants"])
        chosen = select_variants(list(edition.variants), variants or [])
        if not chosen:
            raise Conflict(f"edition {edition.id} has no variant to review: there are no active subscribers")
        marker = placeholders.edition_marker(session, edition.id)
        copies = [_TestCopy(variant_key(v.language, v.interests), v.subject, v.html, v.text, marker) for v in chosen]
        if edition.status is S.DRAFT:
            transition(session, edition, S.REVIEW, actor, f"sent to {len(addresses)} reviewer(s)")
    preview_index = preview_link(engine, settings, edition_id)

    outcome = ReviewOutcome(edition_id, addresses, len(copies), 0, preview_index)
    domain = sender_domain(settings)
    staff_url = f"{settings.web.base_url.rstrip('/')}/staff/editions/{edition_id}"
    transport = SmtpTransport(settings)
    signer = DkimSigner.from_settings(settings)
    try:
        for address in addresses:
            for copy in copies:
                html, text = _with_banner(copy, preview_index, staff_url)
                message = build_message(
                    settings,
                    to_email=address,
                    to_name=None,
                    subject=f"[Test {copy.key}] {copy.subject}",
                    html=_fill_for_review(settings, html, copy.marker, html=True),
                    text=_fill_for_review(settings, text, copy.marker, html=False),
                    message_id=make_msgid(idstring=f"review.{edition_id}", domain=domain),
                    list_unsubscribe_url=None,
                    extra_headers={"X-Bulletin-Variant": copy.key, "X-Bulletin-Preview": preview_index},
                )
                try:
                    transport.send(message, signer)
                except SmtpFailure as exc:
                    if not exc.is_recipient_bounce:
                        raise BulletinError(
                            f"test send to {address} failed after {outcome.messages} message(s): {exc}"
                        ) from None
                    # The server refuses this reviewer: say so, and go on with the others.
                    outcome.failures.append(f"{address} ({exc})")
                    break
                outcome.messages += 1
    finally:
        transport.close()
    log.info("edition %s: %d test message(s) sent to %s", edition_id, outcome.messages, ", ".join(addresses))
    if outcome.failures:
        raise BulletinError(
            f"sent {outcome.messages} test message(s), but the server refused " + "; ".join(outcome.failures)
        )
    return outcome
