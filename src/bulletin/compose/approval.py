"""The locked approval: render, check and approve an edition, and verify the approval before a send.

An approval is locked to the content hash of every variant at the moment it is given; the
approved rendering stays stored in ``edition_variants`` and the sender sends those bytes.
Anything that would change what a subscriber receives voids the approval and sends the edition
back to review. :func:`record_void` re-renders and compares (in a reading session) before any
schedule or send, and records a void in its own transaction; :func:`check_approval` then refuses
without changing anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bulletin.app.editions import get_edition
from bulletin.app.workflow import (
    BEFORE_SEND,
    S,
    list_keys,
    parse_send_time,
    refusal,
    transition,
    valid_approvals,
    void_approvals,
    with_reason,
)
from bulletin.compose.render import RenderedVariant, render_fingerprint, render_variants, store_variants
from bulletin.compose.variants import plan_variants, variant_key
from bulletin.config import Settings
from bulletin.db import reading, transaction
from bulletin.errors import Conflict, Hint, InvalidInput, NextStep
from bulletin.i18n import format_local
from bulletin.models import (
    Approval,
    Edition,
    EditionItem,
    EditionVariant,
    NewsItem,
    Setting,
    utcnow,
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


def approval_problems(
    session: Session,
    settings: Settings,
    edition: Edition,
    *,
    full: bool = True,
    rendered: Sequence[RenderedVariant] | None = None,
) -> list[str]:
    """Why the edition's approval no longer matches what would be sent; empty while it holds.

    The quick check (``full=False``) compares the config fingerprint, the planned variants,
    the stored hashes and re-ingested news; the full check also re-renders every variant and
    compares its hash with the approved one (an item moved, excluded or included). A caller
    that has just rendered the planned variants passes them as ``rendered`` so they are not
    rendered twice.
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
        if rendered is None:
            rendered = render_variants(session, settings, edition, planned)
        changed = sorted(v.key for v in rendered if v.key in approved and v.content_hash != approved[v.key])
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
    (:func:`touched_since_check`). It renders in the session it is given: the edges call
    :func:`record_void` instead, which renders in a reading session and records the void in a
    short transaction of its own.
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


def record_void(
    engine: Engine, settings: Settings, edition_id: int, *, actor: str, full: bool | None = True
) -> list[str]:
    """Check an edition's approval and, if its content changed, void it in a transaction of its own; return why.

    Every edge (CLI, web, scheduler) calls this before an action that needs a valid approval
    (schedule, send, approve again): the void is committed whatever the action then decides,
    and the action itself never mutates and then raises. The check renders in a reading
    session; the write is short and only voids the approvals that were checked.
    """
    with reading(engine) as session:
        edition = get_edition(session, edition_id)
        if edition.status not in BEFORE_SEND or edition.send_started_at is not None:
            return []
        checked = {a.id for a in valid_approvals(session, edition.id)}
        if not checked:
            return []
        # full=None: re-render only an edition touched since its last full check (the sender's case).
        rendering = touched_since_check(session, edition) if full is None else full
        problems = approval_problems(session, settings, edition, full=rendering)
    if not problems:
        if rendering:
            with transaction(engine) as session:
                note_checked(session, get_edition(session, edition_id))
        return []
    with transaction(engine) as session:
        edition = get_edition(session, edition_id)
        # An approval given meanwhile was given to the new content: leave it alone.
        if {a.id for a in valid_approvals(session, edition.id)} - checked:
            return []
        void_approvals(session, edition, "; ".join(problems), actor=actor)
    return problems


@dataclass(frozen=True)
class Refreshed:
    """What :func:`refresh_edition` did: the new rendering, and why the approval is void (empty if it holds)."""

    rendered: list[RenderedVariant]
    voided: list[str]


def refresh_edition(engine: Engine, settings: Settings, edition_id: int, *, actor: str) -> Refreshed:
    """After a change of content: render once, record a void the change causes, store the new rendering.

    The rendering runs in a reading session; the void and the stored variants are written in
    one short transaction, refused if the edition changed meanwhile.
    """
    with reading(engine) as session:
        edition = get_edition(session, edition_id)
        if edition.status not in BEFORE_SEND or edition.send_started_at is not None:
            # What a send started with is locked: its stored rendering is what goes out.
            raise Conflict(f"edition {edition.id} is {edition.status.value}: its rendering can no longer change")
        seen = edition.updated_at
        rendered = render_variants(session, settings, edition)
        checked = {a.id for a in valid_approvals(session, edition.id)}
        problems = approval_problems(session, settings, edition, rendered=rendered) if checked else []
    with transaction(engine) as session:
        edition = get_edition(session, edition_id)
        if edition.updated_at != seen or {a.id for a in valid_approvals(session, edition.id)} - checked:
            raise Conflict(f"edition {edition_id} changed while it was being rendered: render it again")
        if problems:
            void_approvals(session, edition, "; ".join(problems), actor=actor)
        store_variants(session, settings, edition, rendered)
    return Refreshed(rendered, problems)


def check_approval(session: Session, settings: Settings, edition: Edition) -> None:
    """Raise Conflict unless the edition holds enough valid approvals of what it would send now.

    It changes nothing, and re-renders only what re-ingested news may have changed: the full
    re-render runs just before, in :func:`record_void`, outside the write transaction.
    """
    if not valid_approvals(session, edition.id):
        raise Conflict(f"edition {edition.id} is not approved", hint=Hint(NextStep.APPROVE, edition.id))
    problems = approval_problems(session, settings, edition, full=False)
    if problems:
        raise Conflict(
            f"the approval of edition {edition.id} no longer matches because {'; '.join(problems)}: "
            "it needs approval again",
            hint=Hint(NextStep.APPROVE, edition.id),
        )
    needed = settings.workflow.approvals_required
    approvers = {a.approver for a in valid_approvals(session, edition.id)}
    if len(approvers) < needed:
        raise Conflict(
            f"edition {edition.id} has {len(approvers)} of the {needed} approvals it needs",
            hint=Hint(NextStep.APPROVE, edition.id),
        )


@dataclass(frozen=True)
class _Rendering:
    """What an approval is given to: the variants rendered in a reading session, and when the edition last changed."""

    variants: list[RenderedVariant]
    edition_updated_at: datetime


def approve(engine: Engine, settings: Settings, edition_id: int, approver: str) -> Approval:
    """Render every variant once, refuse if any has problems, and record the approver with each hash.

    The edition becomes ``approved`` once ``workflow.approvals_required`` distinct people
    have approved the same rendering. The rendering runs in a reading session; the approval
    and the stored variants are written in one short transaction afterwards.
    """
    approver = approver.strip()
    if not approver:
        raise InvalidInput("say who approves (an empty name is not logged)", hint=Hint(NextStep.APPROVER))
    with reading(engine) as session:
        status = get_edition(session, edition_id).status
    if status in (S.APPROVED, S.SCHEDULED):
        # An approved edition whose content changed goes back to review first (and is rendered afresh below).
        record_void(engine, settings, edition_id, actor=approver)
    with reading(engine) as session:
        edition = get_edition(session, edition_id)
        rendering: _Rendering | None = None
        if edition.status is S.REVIEW:
            rendering = _Rendering(render_variants(session, settings, edition), edition.updated_at)
        elif edition.status not in (S.APPROVED, S.SCHEDULED):
            raise refusal(edition, S.APPROVED)
    with transaction(engine) as session:
        edition = get_edition(session, edition_id)
        if rendering is None:
            if edition.status not in (S.APPROVED, S.SCHEDULED):
                raise refusal(edition, S.APPROVED)
            return _add_approval(session, edition, approver, settings.workflow.approvals_required)
        if edition.status is not S.REVIEW or edition.updated_at != rendering.edition_updated_at:
            raise Conflict(f"edition {edition.id} changed while it was being rendered: approve it again")
        return _approve_rendering(session, settings, edition, approver, rendering.variants)


def _approve_rendering(
    session: Session, settings: Settings, edition: Edition, approver: str, variants: list[RenderedVariant]
) -> Approval:
    """Store the rendering an approver saw and record their approval of it (no rendering here)."""
    needed = settings.workflow.approvals_required
    if not variants:
        raise Conflict(f"edition {edition.id} has no variant to approve: there are no active subscribers")
    if all(v.item_count == 0 for v in variants):
        raise Conflict(f"edition {edition.id} has no news items: include some before approving it")
    problems = [f"{v.key}: {problem}" for v in variants for problem in v.problems]
    if problems:
        raise Conflict(f"edition {edition.id} cannot be approved: " + list_keys(problems, limit=3))
    store_variants(session, settings, edition, variants)
    hashes = {v.key: v.content_hash for v in variants}

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
    """Set the send time of an approved edition (approved, scheduled or paused before sending).

    A refusal changes nothing; call :func:`record_void` first so that a void approval is recorded.
    """
    edition = get_edition(session, edition_id)
    when = parse_send_time(at, settings.schedule.timezone) if isinstance(at, str) else at.astimezone(UTC)
    current = now or utcnow()
    if when < current - timedelta(seconds=60):
        raise InvalidInput(
            f"{format_local(when, settings.schedule.timezone)} is in the past", hint=Hint(NextStep.SEND_NOW, edition.id)
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


def start_sending(session: Session, settings: Settings, edition_id: int, actor: str) -> Edition:
    """Move an approved or scheduled edition to ``sending`` after checking its approval.

    The approval is checked against the stored content hashes, the render fingerprint and the
    planned variants (re-rendering only when news was re-ingested), so the sending process never
    renders every variant: the full check runs before, in :func:`record_void`.

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
        raise refusal(edition, S.SENDING)
    check_approval(session, settings, edition)
    transition(session, edition, S.SENDING, actor, "send started")
    edition.send_started_at = utcnow()
    return edition
