"""The editorial lifecycle of an edition, its log and the locked approval.

An edition moves draft -> review -> approved -> scheduled -> sending -> sent, and may be
paused or cancelled on the way. Every move goes through :func:`transition`, which refuses
illegal ones and appends a row to ``edition_transitions``.

An approval is locked to the content hash of every variant at the moment it is given; the
approved rendering stays stored in ``edition_variants`` and the sender sends those bytes.
Anything that would change what a subscriber receives (a re-ingested news item, a moved or
excluded item, a template or config change, a new (language, interests) variant) voids the
approval and sends the edition back to review. :func:`check_approval` re-renders and compares
before any send starts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

# The one lookup of an edition lives in app/editions; it is re-exported for the sender.
from bulletin.app.editions import get_edition as get_edition
from bulletin.errors import Conflict, Hint, InvalidInput, NextStep
from bulletin.models import (
    Approval,
    Delivery,
    DeliveryState,
    Edition,
    EditionStatus,
    EditionTransition,
    utcnow,
)

log = logging.getLogger(__name__)

S = EditionStatus

# Which status may follow which. Everything else is refused with a clear line.
ALLOWED: dict[EditionStatus, frozenset[EditionStatus]] = {
    S.DRAFT: frozenset({S.REVIEW, S.CANCELLED}),
    S.REVIEW: frozenset({S.DRAFT, S.APPROVED, S.CANCELLED}),
    S.APPROVED: frozenset({S.REVIEW, S.SCHEDULED, S.SENDING, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.REVIEW, S.SCHEDULED, S.SENDING, S.PAUSED, S.CANCELLED}),
    S.SENDING: frozenset({S.SENT, S.PAUSED, S.CANCELLED}),
    S.PAUSED: frozenset({S.REVIEW, S.SCHEDULED, S.SENDING, S.CANCELLED}),
    S.SENT: frozenset(),
    S.CANCELLED: frozenset(),
}

_VERBS: dict[EditionStatus, str] = {
    S.DRAFT: "go back to draft",
    S.REVIEW: "go to review",
    S.APPROVED: "be approved",
    S.SCHEDULED: "be scheduled",
    S.SENDING: "start sending",
    S.SENT: "be marked sent",
    S.PAUSED: "be paused",
    S.CANCELLED: "be cancelled",
}

# States in which the content is not yet locked by a send: an approval given then can be voided.
BEFORE_SEND = frozenset({S.DRAFT, S.REVIEW, S.APPROVED, S.SCHEDULED, S.PAUSED})
# Delivery states that keep an edition in ``sending``.
_UNFINISHED = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DEFERRED)


def refusal(edition: Edition, to_status: EditionStatus) -> Conflict:
    """The Conflict for an illegal move, with the next step when there is one."""
    current = edition.status
    line = f"edition {edition.id} is {current.value}: it cannot {_VERBS[to_status]}"
    if current is S.SENT:
        return Conflict(line + " (it has been sent)")
    if current is S.CANCELLED:
        return Conflict(line + " (it was cancelled)")
    if current is S.DRAFT and to_status in (S.APPROVED, S.SCHEDULED, S.SENDING):
        return Conflict(line + " (submit it for review first)", hint=Hint(NextStep.SUBMIT, edition.id))
    if current is S.REVIEW and to_status in (S.SCHEDULED, S.SENDING):
        return Conflict(line + " (it needs approval first)", hint=Hint(NextStep.APPROVE, edition.id))
    if to_status is S.PAUSED:
        return Conflict(line + " (only a scheduled or sending edition can be paused)")
    if current is S.PAUSED and to_status is S.SENDING:
        return Conflict(line + " (resume it first)", hint=Hint(NextStep.RESUME, edition.id))
    if current is S.SENDING and to_status is S.REVIEW:
        return Conflict(line + " (sending has started; pause or cancel it instead)")
    return Conflict(line)


# ---------------------------------------------------------------------------
# Lookups


def valid_approvals(session: Session, edition_id: int) -> list[Approval]:
    """Approvals of the edition that have not been voided, oldest first."""
    query = (
        select(Approval)
        .where(Approval.edition_id == edition_id, Approval.voided_at.is_(None))
        .order_by(Approval.at, Approval.id)
    )
    return list(session.scalars(query))


def transitions_of(session: Session, edition_id: int) -> list[EditionTransition]:
    """The lifecycle log of an edition, oldest first."""
    query = select(EditionTransition).where(EditionTransition.edition_id == edition_id)
    return list(session.scalars(query.order_by(EditionTransition.at, EditionTransition.id)))


def approvals_of(session: Session, edition_id: int) -> list[Approval]:
    """Every approval given to an edition, valid or void, oldest first."""
    query = select(Approval).where(Approval.edition_id == edition_id).order_by(Approval.at, Approval.id)
    return list(session.scalars(query))


def is_halted(session: Session, edition_id: int) -> bool:
    """True when the edition is paused or cancelled: the sender stops between batches."""
    status = session.scalar(select(Edition.status).where(Edition.id == edition_id))
    return status in (S.PAUSED, S.CANCELLED)


# ---------------------------------------------------------------------------
# Transitions


def transition(
    session: Session,
    edition: Edition,
    to_status: EditionStatus | str,
    actor: str,
    reason: str | None = None,
) -> EditionTransition:
    """Move the edition to ``to_status`` and log who did it; raise Conflict if the move is illegal."""
    try:
        target = EditionStatus(to_status)
    except ValueError:
        known = ", ".join(s.value for s in EditionStatus)
        raise InvalidInput(f"unknown edition status {to_status!r} (known: {known})") from None
    if not actor.strip():
        raise InvalidInput("say who is acting (an empty name is not logged)")
    if target not in ALLOWED[edition.status]:
        raise refusal(edition, target)
    row = EditionTransition(
        edition_id=edition.id,
        at=utcnow(),
        from_status=edition.status.value,
        to_status=target.value,
        actor=actor.strip(),
        reason=reason,
    )
    edition.status = target
    session.add(row)
    session.flush()
    log.info("edition %s: %s -> %s by %s%s", edition.id, row.from_status, row.to_status, actor, with_reason(reason))
    return row


def with_reason(reason: str | None) -> str:
    return f" ({reason})" if reason else ""


def submit(session: Session, edition_id: int, actor: str) -> Edition:
    """Send a draft to review (draft -> review)."""
    edition = get_edition(session, edition_id)
    transition(session, edition, S.REVIEW, actor, "submitted for review")
    return edition


def reopen(session: Session, edition_id: int, actor: str, reason: str | None = None) -> Edition:
    """Take an edition in review back to draft; its approvals so far are voided."""
    edition = get_edition(session, edition_id)
    transition(session, edition, S.DRAFT, actor, reason or "reopened for editing")
    _void(session, edition, f"reopened by {actor}")
    return edition


def pause(session: Session, edition_id: int, actor: str, reason: str | None = None) -> Edition:
    """Hold a scheduled or sending edition; each connection of the sender stops after the message in hand."""
    edition = get_edition(session, edition_id)
    transition(session, edition, S.PAUSED, actor, reason)
    return edition


def paused_from(session: Session, edition: Edition) -> EditionStatus | None:
    """The status the edition had when it was last paused."""
    query = (
        select(EditionTransition.from_status)
        .where(EditionTransition.edition_id == edition.id, EditionTransition.to_status == S.PAUSED.value)
        .order_by(EditionTransition.at.desc(), EditionTransition.id.desc())
        .limit(1)
    )
    value = session.scalar(query)
    return EditionStatus(value) if value else None


def resume(session: Session, edition_id: int, actor: str) -> Edition:
    """Continue a paused edition where it was: scheduled again, or sending.

    A resumed send is continued by the scheduler's next tick, or at once by ``bulletin edition send``.
    """
    edition = get_edition(session, edition_id)
    if edition.status is not S.PAUSED:
        raise Conflict(f"edition {edition.id} is {edition.status.value}: only a paused edition can be resumed")
    if edition.send_started_at is not None or paused_from(session, edition) is S.SENDING:
        transition(session, edition, S.SENDING, actor, "resumed")
    elif edition.scheduled_at is not None:
        transition(session, edition, S.SCHEDULED, actor, "resumed")
    else:
        raise Conflict(f"edition {edition.id} has no send time", hint=Hint(NextStep.SCHEDULE, edition.id))
    return edition


def cancel(session: Session, edition_id: int, actor: str, reason: str | None = None) -> Edition:
    """Cancel an edition for good; a send in progress stops after its current batch."""
    edition = get_edition(session, edition_id)
    transition(session, edition, S.CANCELLED, actor, reason)
    return edition


# ---------------------------------------------------------------------------
# Approval


def _void(session: Session, edition: Edition, reason: str) -> int:
    now = utcnow()
    count = 0
    for approval in valid_approvals(session, edition.id):
        approval.voided_at = now
        approval.void_reason = reason
        count += 1
    return count


def void_approvals(session: Session, edition: Edition, reason: str, actor: str = "workflow") -> int:
    """Void every approval of an edition whose send has not started and return it to review.

    Returns the number of approvals voided. Once sending has started the content is locked
    (the stored rendering is what goes out), so nothing is voided then.
    """
    if edition.status not in BEFORE_SEND or edition.send_started_at is not None:
        return 0
    count = _void(session, edition, reason)
    if edition.status in (S.APPROVED, S.SCHEDULED, S.PAUSED):
        transition(session, edition, S.REVIEW, actor, f"approval void: {reason}")
    if count:
        log.warning("edition %s: %d approval(s) void: %s", edition.id, count, reason)
    return count


def list_keys(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    more = len(keys) - limit
    return shown + (f" and {more} more" if more > 0 else "")


# ---------------------------------------------------------------------------
# Scheduling a send


def parse_send_time(value: str, timezone: str) -> datetime:
    """Read ``YYYY-MM-DD HH:MM`` in the configured time zone (or with an explicit offset) as UTC."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"send time {value!r}: expected a date and time like 2026-12-01 09:00", hint=Hint(NextStep.SEND_TIME)
        ) from None
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    zone = ZoneInfo(timezone)
    local = parsed.replace(tzinfo=zone)
    # A wall-clock time skipped when the clocks go forward does not survive the round trip.
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != parsed:
        raise InvalidInput(
            f"send time {value!r} does not exist in {timezone} (the clocks change then)", hint=Hint(NextStep.SEND_TIME)
        )
    return local.astimezone(UTC)


# ---------------------------------------------------------------------------
# Sending


def unfinished_deliveries(session: Session, edition_id: int) -> int:
    """Deliveries still pending, being sent or deferred."""
    query = select(func.count(Delivery.id)).where(Delivery.edition_id == edition_id, Delivery.state.in_(_UNFINISHED))
    return int(session.scalar(query) or 0)


def finish_sending(session: Session, edition_id: int, actor: str) -> Edition:
    """Mark a sending edition ``sent`` once no delivery is pending, sending or deferred."""
    edition = get_edition(session, edition_id)
    if edition.status is S.SENDING and unfinished_deliveries(session, edition_id) == 0:
        transition(session, edition, S.SENT, actor, "every delivery settled")
        edition.sent_at = utcnow()
    return edition


def due_editions(session: Session, now: datetime | None = None) -> list[int]:
    """Scheduled editions whose send time has passed."""
    moment = now or utcnow()
    query = (
        select(Edition.id)
        .where(Edition.status == S.SCHEDULED, Edition.scheduled_at.is_not(None), Edition.scheduled_at <= moment)
        .order_by(Edition.scheduled_at, Edition.id)
    )
    return list(session.scalars(query))


def approved_waiting(session: Session) -> list[int]:
    """Editions approved or scheduled whose send has not started (checked for voiding changes)."""
    query = select(Edition.id).where(Edition.status.in_((S.APPROVED, S.SCHEDULED))).order_by(Edition.id)
    return list(session.scalars(query))
