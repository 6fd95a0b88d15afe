"""The locked approval: render, check and approve an edition, and verify the approval before a send.

An approval is locked to the content hash of every variant at the moment it is given; the
approved rendering stays stored in ``edition_variants`` and the sender sends those bytes.
Anything that would change what a subscriber receives voids the approval and sends the edition
back to review. :func:`check_approval` re-renders and compares before any send starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from bulletin.compose.render import render_edition, render_fingerprint, render_variants
from bulletin.compose.variants import plan_variants, variant_key
from bulletin.config import Settings
from bulletin.errors import Conflict, InvalidInput
from bulletin.models import (
    Approval,
    Edition,
    EditionItem,
    EditionVariant,
    NewsItem,
    Setting,
    utcnow,
)

if TYPE_CHECKING:
    pass

from bulletin.app.workflow import (
    BEFORE_SEND,
    S,
    format_local,
    get_edition,
    list_keys,
    parse_send_time,
    refusal,
    transition,
    valid_approvals,
    void_approvals,
    with_reason,
)

log = logging.getLogger(__name__)


def _hash_problems(
    session: Session, settings: Settings, edition: Edition, approved: dict[str, str], planned: Sequence[str] = ()
) -> list[str]:
    """Differences between the stored rendering and the approved hashes (no re-render)."""
    problems: list[str] = []
    if edition.render_fingerprint != render_fingerprint(settings):
        problems.append("the templates or rendering settings changed")
    # Only the keys and hashes: the stored HTML of every variant is not loaded to compare them.
    stored = {
        variant_key(language, interests): digest
        for language, interests, digest in session.execute(
            select(EditionVariant.language, EditionVariant.interests, EditionVariant.content_hash).where(
                EditionVariant.edition_id == edition.id
            )
        )
    }
    altered = sorted(key for key, digest in approved.items() if key in stored and stored[key] != digest)
    if altered:
        problems.append("the stored rendering of " + list_keys(altered) + " is not the approved one")
    missing = sorted(key for key in planned if key in approved and key not in stored)
    if missing:
        problems.append("the approved rendering of " + list_keys(missing) + " is no longer stored")
    return problems


def _changed_news(session: Session, edition: Edition, since: datetime) -> list[NewsItem]:
    query = (
        select(NewsItem)
        .join(EditionItem, EditionItem.news_item_id == NewsItem.id)
        .where(
            EditionItem.edition_id == edition.id,
            EditionItem.excluded.is_(False),
            NewsItem.changed.is_(True),
            NewsItem.updated_at > since,
        )
        .order_by(NewsItem.id)
    )
    return list(session.scalars(query))


def approval_problems(session: Session, settings: Settings, edition: Edition, *, full: bool = True) -> list[str]:
    """Why the edition's approval no longer matches what would be sent; empty while it holds.

    The quick check (``full=False``) compares the config fingerprint, the planned variants,
    the stored hashes and re-ingested news; the full check also re-renders every variant and
    compares its hash with the approved one (an item moved, excluded or included).
    """
    approvals = valid_approvals(session, edition.id)
    if not approvals:
        return ["it has no valid approval"]
    approved = approvals[-1].variant_hashes
    planned = plan_variants(session, settings, edition)
    planned_keys = [variant_key(language, interests) for language, interests in planned]
    problems = _hash_problems(session, settings, edition, approved, planned_keys)
    new = sorted(key for key in planned_keys if key not in approved)
    if new:
        problems.append("subscribers now need new variant(s) " + list_keys(new))
    if problems:
        return problems
    # A re-ingested item only matters if it changes what a variant renders, so re-render to be sure.
    reingested = _changed_news(session, edition, min(a.at for a in approvals))
    if full or reingested:
        rendered = render_variants(session, settings, edition, planned)
        changed = sorted(v.key for v in rendered if v.content_hash != approved[v.key])
        if changed:
            cause = ", ".join(f"news item {item.id} re-ingested" for item in reingested[:3])
            problems.append(
                "the content of " + list_keys(changed) + " changed since approval" + with_reason(cause or None)
            )
    return problems


def _checked_key(edition_id: int) -> str:
    return f"approval.checked.{edition_id}"


def note_checked(session: Session, edition: Edition) -> None:
    """Record that the edition, as it is now, renders to its approved hashes (a full check passed)."""
    session.flush()
    stamp = edition.updated_at.isoformat()
    marker = session.get(Setting, _checked_key(edition.id))
    if marker is None:
        session.add(Setting(key=_checked_key(edition.id), value=stamp))
    else:
        marker.value = stamp
    session.flush()


def touched_since_check(session: Session, edition: Edition) -> bool:
    """True unless a full check (or the approval's own rendering) saw the edition as it is now.

    An item moved, excluded or included changes ``updated_at``; only such an edition needs its
    variants rendered again to be compared. Anything else is caught by the quick check.
    """
    marker = session.get(Setting, _checked_key(edition.id))
    return marker is None or marker.value != edition.updated_at.isoformat()


def refresh_approval(
    session: Session, settings: Settings, edition: Edition, *, actor: str = "workflow", full: bool | None = True
) -> list[str]:
    """Void the approval (and return the edition to review) if its content changed; return why.

    ``full=None`` re-renders only if the edition was touched since it was last fully checked
    (:func:`touched_since_check`): the sender uses it, so it never renders every variant of an
    edition nobody changed. Use it in its own transaction before :func:`start_sending` so the
    void is recorded even though the send is refused.
    """
    if edition.status not in BEFORE_SEND or edition.send_started_at is not None:
        return []
    if not valid_approvals(session, edition.id):
        return []
    rendering = touched_since_check(session, edition) if full is None else full
    problems = approval_problems(session, settings, edition, full=rendering)
    if problems:
        void_approvals(session, edition, "; ".join(problems), actor=actor)
    elif rendering:
        note_checked(session, edition)
    return problems


def check_approval(session: Session, settings: Settings, edition: Edition, *, full: bool = True) -> None:
    """Compare with the approval (re-rendering unless ``full=False``); void it and raise Conflict if it differs."""
    if not valid_approvals(session, edition.id):
        raise Conflict(f"edition {edition.id} is not approved (bulletin edition approve {edition.id} --by NAME)")
    problems = refresh_approval(session, settings, edition, full=full)
    if problems:
        raise Conflict(
            f"approval of edition {edition.id} is void because {'; '.join(problems)}: "
            "it is back in review and needs approval again"
        )
    needed = settings.workflow.approvals_required
    approvers = {a.approver for a in valid_approvals(session, edition.id)}
    if len(approvers) < needed:
        raise Conflict(f"edition {edition.id} has {len(approvers)} of the {needed} approvals it needs")


def approve(session: Session, settings: Settings, edition_id: int, approver: str) -> Approval:
    """Render every variant, refuse if any has problems, and record the approver with each hash.

    The edition becomes ``approved`` once ``workflow.approvals_required`` distinct people
    have approved the same rendering.
    """
    approver = approver.strip()
    if not approver:
        raise InvalidInput("say who approves: --by NAME")
    edition = get_edition(session, edition_id)
    needed = settings.workflow.approvals_required
    if edition.status in (S.APPROVED, S.SCHEDULED):
        refresh_approval(session, settings, edition, actor=approver)
    if edition.status in (S.APPROVED, S.SCHEDULED):
        return _add_approval(session, edition, approver, needed)
    if edition.status is not S.REVIEW:
        raise Conflict(refusal(edition, S.APPROVED))

    variants = render_edition(session, settings, edition)
    if not variants:
        raise Conflict(f"edition {edition.id} has no variant to approve: there are no active subscribers")
    if all(v.item_count == 0 for v in variants):
        raise Conflict(f"edition {edition.id} has no news items: include some before approving it")
    problems = [f"{variant_key(v.language, v.interests)}: {problem}" for v in variants for problem in v.problems]
    if problems:
        raise Conflict(f"edition {edition.id} cannot be approved: " + list_keys(problems, limit=3))
    hashes = {variant_key(v.language, v.interests): v.content_hash for v in variants}

    # Approvals given to an earlier rendering no longer count.
    earlier = valid_approvals(session, edition.id)
    stale = [a for a in earlier if a.variant_hashes != hashes]
    now = utcnow()
    for approval in stale:
        approval.voided_at = now
        approval.void_reason = "the content changed before the edition was fully approved"
    current = [a for a in earlier if a.variant_hashes == hashes]
    if any(a.approver.casefold() == approver.casefold() for a in current):
        raise Conflict(f"{approver} has already approved edition {edition.id}; another person must approve it")

    approval = Approval(edition_id=edition.id, approver=approver, at=now, variant_hashes=hashes)
    session.add(approval)
    session.flush()
    approvers = {a.approver.casefold() for a in current} | {approver.casefold()}
    if len(approvers) >= needed:
        transition(session, edition, S.APPROVED, approver, f"approved ({len(approvers)} of {needed})")
    else:
        log.info("edition %s: approval %d of %d by %s", edition.id, len(approvers), needed, approver)
    # The variants were just rendered to these hashes.
    note_checked(session, edition)
    return approval


def _add_approval(session: Session, edition: Edition, approver: str, needed: int) -> Approval:
    """One more approver for an already approved edition (``approvals_required`` was raised since).

    The stored rendering is the approved one (the approval was just checked), so it is not rendered again.
    """
    current = valid_approvals(session, edition.id)
    approvers = {a.approver.casefold() for a in current}
    if len(approvers) >= needed:
        raise Conflict(f"edition {edition.id} is already {edition.status.value}")
    if approver.casefold() in approvers:
        raise Conflict(f"{approver} has already approved edition {edition.id}; another person must approve it")
    approval = Approval(
        edition_id=edition.id, approver=approver, at=utcnow(), variant_hashes=current[-1].variant_hashes
    )
    session.add(approval)
    session.flush()
    log.info("edition %s: approval %d of %d by %s", edition.id, len(approvers) + 1, needed, approver)
    return approval


def schedule(
    session: Session,
    settings: Settings,
    edition_id: int,
    at: datetime | str,
    actor: str,
    *,
    now: datetime | None = None,
) -> Edition:
    """Set the send time of an approved edition (approved, scheduled or paused before sending)."""
    edition = get_edition(session, edition_id)
    when = parse_send_time(at, settings.schedule.timezone) if isinstance(at, str) else at.astimezone(UTC)
    current = now or utcnow()
    if when < current - timedelta(seconds=60):
        raise InvalidInput(
            f"{format_local(when, settings.schedule.timezone)} is in the past; "
            f"to send now use bulletin edition send {edition.id}"
        )
    if edition.status is S.PAUSED and edition.send_started_at is not None:
        raise Conflict(f"edition {edition.id} has started sending: resume it instead of scheduling it")
    if edition.status in (S.APPROVED, S.SCHEDULED, S.PAUSED):
        check_approval(session, settings, edition)
    reason = "at " + format_local(when, settings.schedule.timezone)
    was_checked = not touched_since_check(session, edition)
    transition(session, edition, S.SCHEDULED, actor, reason)
    edition.scheduled_at = when
    if was_checked:
        note_checked(session, edition)
    return edition


def start_sending(session: Session, settings: Settings, edition_id: int, actor: str, *, full: bool = True) -> Edition:
    """Move an approved or scheduled edition to ``sending`` after checking its approval.

    The sender passes ``full=False``: the approval is checked against the stored content hashes,
    the render fingerprint and the planned variants (re-rendering only when news was re-ingested),
    so the sending process never renders every variant.

    A ``sending`` edition (a send interrupted by a crash) is returned as is, so the send resumes.
    """
    edition = get_edition(session, edition_id)
    if edition.status is S.SENDING:
        approvals = valid_approvals(session, edition.id)
        problems = _hash_problems(session, settings, edition, approvals[-1].variant_hashes) if approvals else []
        stored_changed = [p for p in problems if p.startswith("the stored rendering")]
        if not approvals or stored_changed:
            raise Conflict(f"edition {edition.id} is sending but its stored rendering is not the approved one")
        return edition
    if edition.status not in (S.APPROVED, S.SCHEDULED):
        raise Conflict(refusal(edition, S.SENDING))
    check_approval(session, settings, edition, full=full)
    transition(session, edition, S.SENDING, actor, "send started")
    edition.send_started_at = utcnow()
    return edition
