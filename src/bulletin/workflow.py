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
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulletin import compose
from bulletin.config import Settings
from bulletin.errors import BulletinError, Conflict, InvalidInput, NotFound
from bulletin.models import (
    Approval,
    Delivery,
    DeliveryState,
    Edition,
    EditionItem,
    EditionStatus,
    EditionTransition,
    NewsItem,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bulletin.models import EditionVariant
    from bulletin.send import SendReport

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
_BEFORE_SEND = frozenset({S.DRAFT, S.REVIEW, S.APPROVED, S.SCHEDULED, S.PAUSED})
# Delivery states that keep an edition in ``sending``.
_UNFINISHED = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DEFERRED)


def _refusal(edition: Edition, to_status: EditionStatus) -> str:
    current = edition.status
    line = f"edition {edition.id} is {current.value}: it cannot {_VERBS[to_status]}"
    if current is S.SENT:
        return line + " (it has been sent)"
    if current is S.CANCELLED:
        return line + " (it was cancelled)"
    if current is S.DRAFT and to_status in (S.APPROVED, S.SCHEDULED, S.SENDING):
        return line + f" (submit it for review first: bulletin edition submit {edition.id})"
    if current is S.REVIEW and to_status in (S.SCHEDULED, S.SENDING):
        return line + f" (it needs approval first: bulletin edition approve {edition.id} --by NAME)"
    if to_status is S.PAUSED:
        return line + " (only a scheduled or sending edition can be paused)"
    if current is S.PAUSED and to_status is S.SENDING:
        return line + f" (resume it first: bulletin edition resume {edition.id})"
    if current is S.SENDING and to_status is S.REVIEW:
        return line + " (sending has started; pause or cancel it instead)"
    return line


# ---------------------------------------------------------------------------
# Lookups


def get_edition(session: Session, edition_id: int) -> Edition:
    """The edition with this id, or NotFound."""
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFound(f"no edition {edition_id}")
    return edition


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
        raise Conflict(_refusal(edition, target))
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
    log.info("edition %s: %s -> %s by %s%s", edition.id, row.from_status, row.to_status, actor, _suffix(reason))
    return row


def _suffix(reason: str | None) -> str:
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
    """Hold a scheduled or sending edition; the sender stops after its current batch."""
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
        raise Conflict(f"edition {edition.id} has no send time: schedule it with bulletin edition schedule")
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
    if edition.status not in _BEFORE_SEND or edition.send_started_at is not None:
        return 0
    count = _void(session, edition, reason)
    if edition.status in (S.APPROVED, S.SCHEDULED, S.PAUSED):
        transition(session, edition, S.REVIEW, actor, f"approval void: {reason}")
    if count:
        log.warning("edition %s: %d approval(s) void: %s", edition.id, count, reason)
    return count


def _hash_problems(
    session: Session, settings: Settings, edition: Edition, approved: dict[str, str], planned: Sequence[str] = ()
) -> list[str]:
    """Differences between the stored rendering and the approved hashes (no re-render)."""
    problems: list[str] = []
    if edition.render_fingerprint != compose.render_fingerprint(settings):
        problems.append("the templates or rendering settings changed")
    stored = {
        compose.variant_key(language, interests): row.content_hash
        for (language, interests), row in compose.stored_variants(session, edition).items()
    }
    altered = sorted(key for key, digest in approved.items() if key in stored and stored[key] != digest)
    if altered:
        problems.append("the stored rendering of " + _keys(altered) + " is not the approved one")
    missing = sorted(key for key in planned if key in approved and key not in stored)
    if missing:
        problems.append("the approved rendering of " + _keys(missing) + " is no longer stored")
    return problems


def _keys(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    more = len(keys) - limit
    return shown + (f" and {more} more" if more > 0 else "")


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
    planned = compose.plan_variants(session, settings, edition)
    planned_keys = [compose.variant_key(language, interests) for language, interests in planned]
    problems = _hash_problems(session, settings, edition, approved, planned_keys)
    new = sorted(key for key in planned_keys if key not in approved)
    if new:
        problems.append("subscribers now need new variant(s) " + _keys(new))
    if problems:
        return problems
    # A re-ingested item only matters if it changes what a variant renders, so re-render to be sure.
    reingested = _changed_news(session, edition, min(a.at for a in approvals))
    if full or reingested:
        rendered = compose.render_variants(session, settings, edition, planned)
        changed = sorted(v.key for v in rendered if v.content_hash != approved[v.key])
        if changed:
            cause = ", ".join(f"news item {item.id} re-ingested" for item in reingested[:3])
            problems.append("the content of " + _keys(changed) + " changed since approval" + _suffix(cause or None))
    return problems


def refresh_approval(
    session: Session, settings: Settings, edition: Edition, *, actor: str = "workflow", full: bool = True
) -> list[str]:
    """Void the approval (and return the edition to review) if its content changed; return why.

    Use it in its own transaction before :func:`start_sending` so the void is recorded even
    though the send is refused.
    """
    if edition.status not in _BEFORE_SEND or edition.send_started_at is not None:
        return []
    if not valid_approvals(session, edition.id):
        return []
    problems = approval_problems(session, settings, edition, full=full)
    if problems:
        void_approvals(session, edition, "; ".join(problems), actor=actor)
    return problems


def check_approval(session: Session, settings: Settings, edition: Edition) -> None:
    """Re-render and compare with the approval; void it and raise Conflict if anything differs."""
    if not valid_approvals(session, edition.id):
        raise Conflict(f"edition {edition.id} is not approved (bulletin edition approve {edition.id} --by NAME)")
    problems = refresh_approval(session, settings, edition)
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
        raise Conflict(_refusal(edition, S.APPROVED))

    variants = compose.render_edition(session, settings, edition)
    if not variants:
        raise Conflict(f"edition {edition.id} has no variant to approve: there are no active subscribers")
    if all(v.item_count == 0 for v in variants):
        raise Conflict(f"edition {edition.id} has no news items: include some before approving it")
    problems = [
        f"{compose.variant_key(v.language, v.interests)}: {problem}" for v in variants for problem in v.problems
    ]
    if problems:
        raise Conflict(f"edition {edition.id} cannot be approved: " + _keys(problems, limit=3))
    hashes = {compose.variant_key(v.language, v.interests): v.content_hash for v in variants}

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


# ---------------------------------------------------------------------------
# Scheduling a send


def parse_send_time(value: str, timezone: str) -> datetime:
    """Read ``YYYY-MM-DD HH:MM`` in the configured time zone (or with an explicit offset) as UTC."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--at {value!r}: expected a date and time like 2026-12-01 09:00") from None
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    zone = ZoneInfo(timezone)
    local = parsed.replace(tzinfo=zone)
    # A wall-clock time skipped when the clocks go forward does not survive the round trip.
    if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != parsed:
        raise InvalidInput(f"--at {value!r} does not exist in {timezone} (the clocks change then)")
    return local.astimezone(UTC)


def format_local(moment: datetime, timezone: str) -> str:
    """A UTC moment as readable local time with its zone abbreviation."""
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


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
    transition(session, edition, S.SCHEDULED, actor, reason)
    edition.scheduled_at = when
    return edition


# ---------------------------------------------------------------------------
# Sending


def start_sending(session: Session, settings: Settings, edition_id: int, actor: str) -> Edition:
    """Move an approved or scheduled edition to ``sending`` after checking its approval.

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
        raise Conflict(_refusal(edition, S.SENDING))
    check_approval(session, settings, edition)
    transition(session, edition, S.SENDING, actor, "send started")
    edition.send_started_at = utcnow()
    return edition


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


@dataclass
class SendOutcome:
    """What one attempt to send an edition did."""

    edition_id: int
    started: bool
    status: EditionStatus
    report: SendReport | None = None
    refused: str | None = None


def send_edition(engine: Engine, settings: Settings, edition_id: int, *, actor: str, worker: str) -> SendOutcome:
    """Start (or resume) an approved edition and send it: verify, freeze recipients, send, finish.

    Each step is its own short transaction; no transaction is held while talking SMTP.
    """
    # bulletin.send checks is_halted() from here, so it is imported when needed.
    from bulletin import send
    from bulletin.db import transaction

    with transaction(engine) as session:
        edition = get_edition(session, edition_id)
        problems = refresh_approval(session, settings, edition, actor=actor)
        if problems:
            return SendOutcome(edition_id, False, edition.status, refused="approval void: " + "; ".join(problems))
    with transaction(engine) as session:
        edition = start_sending(session, settings, edition_id, actor)
        send.freeze_recipients(session, settings, edition)
    report = send.run_send(engine, settings, edition_id, worker=worker)
    with transaction(engine) as session:
        edition = finish_sending(session, edition_id, actor)
        return SendOutcome(edition_id, True, edition.status, report=report)


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


def sending_editions(session: Session) -> list[int]:
    return list(session.scalars(select(Edition.id).where(Edition.status == S.SENDING).order_by(Edition.id)))


# ---------------------------------------------------------------------------
# Test sends to reviewers


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
            known = _keys(sorted(compose.variant_key(v.language, v.interests) for v in variants), limit=6)
            raise InvalidInput(f"--variant {name!r}: no such variant (this edition has {known or 'none'})")
        chosen.update((v.id, v) for v in matches)
    return [v for v in variants if v.id in chosen]


@dataclass(frozen=True)
class _TestCopy:
    key: str
    subject: str
    html: str
    text: str


def _fill_for_review(settings: Settings, body: str) -> str:
    from bulletin import placeholders
    from bulletin.links import PATHS

    base = settings.web.base_url.rstrip("/")
    values = {
        placeholders.NAME: "",
        placeholders.UNSUBSCRIBE_URL: base + PATHS["unsubscribe"] + "test-send",
        placeholders.PREFERENCES_URL: base + PATHS["preferences"] + "test-send",
    }
    for placeholder, value in values.items():
        body = body.replace(placeholder, value)
    return body


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

    from bulletin.db import transaction
    from bulletin.mail import DkimSigner, build_message, sender_domain
    from bulletin.smtp import SmtpFailure, SmtpTransport
    from bulletin.subscribers import normalize_email

    addresses = list(dict.fromkeys(normalize_email(r) for r in recipients))
    if not addresses:
        raise InvalidInput("name at least one reviewer address")
    with transaction(engine) as session:
        edition = get_edition(session, edition_id)
        if edition.status is S.CANCELLED:
            raise Conflict(f"edition {edition.id} was cancelled: there is nothing to review")
        if edition.status in (S.DRAFT, S.REVIEW):
            compose.render_edition(session, settings, edition)
            session.flush()
            session.refresh(edition, ["variants"])
        chosen = select_variants(list(edition.variants), variants or [])
        if not chosen:
            raise Conflict(f"edition {edition.id} has no variant to review: there are no active subscribers")
        copies = [_TestCopy(compose.variant_key(v.language, v.interests), v.subject, v.html, v.text) for v in chosen]
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
                    html=_fill_for_review(settings, html),
                    text=_fill_for_review(settings, text),
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


def preview_link(engine: Engine, settings: Settings, edition_id: int) -> str:
    """Write the edition's previews and return the address of their index."""
    from bulletin import preview

    index = preview.write_preview(engine, settings, edition_id)
    return str(index)
