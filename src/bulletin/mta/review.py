"""Test copies of an edition's variants for reviewers, with a banner linking the previews."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine

from bulletin.app.editions import get_edition
from bulletin.app.subscribers import interests_key, normalize_email
from bulletin.app.workflow import S, list_keys, transition
from bulletin.compose import placeholders
from bulletin.compose.preview import preview_dir, write_index, write_previews
from bulletin.compose.render import RenderedVariant, render_variants, store_variants
from bulletin.compose.variants import stored_variants, variant_subscriber_counts
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import BulletinError, Conflict, InvalidInput
from bulletin.models import EditionVariant
from bulletin.mta.mail import DkimSigner
from bulletin.mta.notices import VariantCopy, review_copy_message
from bulletin.mta.smtp import SmtpFailure, SmtpTransport

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


def select_variants(variants: list[RenderedVariant], wanted: list[str]) -> list[RenderedVariant]:
    """The variants named by ``fr`` (every French one) or ``fr|cities,youth`` (that one); all if none named."""
    if not wanted:
        return list(variants)
    chosen: set[str] = set()
    for name in wanted:
        language, bar, interests = name.strip().partition("|")
        key_interests = interests_key(interests.split(","))
        matches = [v for v in variants if v.language == language and (not bar or v.interests == key_interests)]
        if not matches:
            known = list_keys(sorted(v.key for v in variants), limit=6)
            raise InvalidInput(f"variant {name!r}: no such variant (this edition has {known or 'none'})")
        chosen.update(v.key for v in matches)
    return [v for v in variants if v.key in chosen]


def _stored(row: EditionVariant) -> RenderedVariant:
    """A stored (approved) rendering, in the shape of a fresh one, for previews and copies."""
    problems = [line for line in (row.problems or "").splitlines() if line.strip()]
    return RenderedVariant(
        language=row.language,
        interests=row.interests,
        subject=row.subject,
        preheader=row.preheader,
        html=row.html,
        text=row.text,
        content_hash=row.content_hash,
        html_size=row.html_size,
        item_count=row.item_count,
        problems=problems,
    )


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

    A draft or an edition in review is rendered once, in a reading session; that rendering is
    stored (and a draft moves to review) in one short transaction, and the same rendering makes
    the previews and the copies. An approved edition's stored rendering is sent as is. Test
    copies never touch the delivery ledger.
    """
    addresses = list(dict.fromkeys(normalize_email(r) for r in recipients))
    if not addresses:
        raise InvalidInput("name at least one reviewer address")
    with reading(engine) as session:
        edition = get_edition(session, edition_id)
        if edition.status is S.CANCELLED:
            raise Conflict(f"edition {edition.id} was cancelled: there is nothing to review")
        fresh = edition.status in (S.DRAFT, S.REVIEW)
        seen = edition.updated_at
        if fresh:
            rendered = render_variants(session, settings, edition)
        else:
            rendered = [_stored(row) for row in stored_variants(session, edition).values()]
        counts = variant_subscriber_counts(session, settings)
        marker = placeholders.edition_marker(session, edition.id)
    chosen = select_variants(rendered, variants or [])
    if not chosen:
        raise Conflict(f"edition {edition_id} has no variant to review: there are no active subscribers")
    if fresh:
        with transaction(engine) as session:
            edition = get_edition(session, edition_id)
            if edition.status not in (S.DRAFT, S.REVIEW) or edition.updated_at != seen:
                raise Conflict(f"edition {edition_id} changed while it was being rendered: send the review again")
            store_variants(session, settings, edition, rendered)
            if edition.status is S.DRAFT:
                transition(session, edition, S.REVIEW, actor, f"sent to {len(addresses)} reviewer(s)")
    folder = preview_dir(settings, edition_id)
    preview_index = str(write_index(settings, edition, write_previews(settings, rendered, folder, counts), folder))
    copies = [VariantCopy(edition_id, v.key, v.subject, v.html, v.text, marker) for v in chosen]

    outcome = ReviewOutcome(edition_id, addresses, len(copies), 0, preview_index)
    transport = SmtpTransport(settings)
    signer = DkimSigner.from_settings(settings)
    try:
        for address in addresses:
            for copy in copies:
                # Each copy's banner is in the language of the variant the reviewer is reading.
                language = copy.key.partition("|")[0]
                message = review_copy_message(
                    settings, copy, to_email=address, language=language, preview_index=preview_index
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
