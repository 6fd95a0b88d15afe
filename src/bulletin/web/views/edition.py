"""One edition for staff: the preview grid of its variants and the actions allowed by role.

Editors arrange stories, render previews, submit for review and send tests to themselves;
approvers also approve, schedule, pause, resume and cancel. Every action checks the role
here, on the server, whatever buttons the page showed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from bulletin.app import editions, workflow
from bulletin.app.editions import EDITABLE, edition_stories, get_edition
from bulletin.compose import approval, placeholders
from bulletin.compose.approval import refresh_edition
from bulletin.compose.render import render_fingerprint
from bulletin.compose.variants import variant_key, variant_subscriber_counts
from bulletin.config import Settings
from bulletin.errors import BulletinError, Hint, InvalidInput, NextStep, NotFound
from bulletin.i18n import PageText
from bulletin.models import (
    Approval,
    EditionStatus,
    EditionTransition,
    EditionVariant,
    StaffRole,
)
from bulletin.models.base import MAX_INTEGER_ID
from bulletin.mta.ledger import delivery_counts
from bulletin.mta.notices import VariantCopy, copy_for_tester, sample_values, topic_labels
from bulletin.mta.smtp import send_one
from bulletin.web.auth import StaffUser, forbidden, staff_view
from bulletin.web.headers import EMAIL_FRAME_POLICY, PREVIEW_GRID_POLICY
from bulletin.web.language import language_name
from bulletin.web.pages import engine_of, flash, page_language, read, render, settings_of, write

S = EditionStatus
# Which status changes the page offers, and the role each needs.
STATUS_ACTIONS: dict[str, StaffRole] = {
    "submit": StaffRole.EDITOR,
    "reopen": StaffRole.EDITOR,
    "pause": StaffRole.APPROVER,
    "resume": StaffRole.APPROVER,
    "cancel": StaffRole.APPROVER,
}
ARRANGE_ACTIONS = ("up", "down", "exclude", "include")


@dataclass(frozen=True)
class VersionView:
    news_item_id: int
    title: str
    language: str
    excluded: bool
    link: str | None


@dataclass(frozen=True)
class StoryView:
    position: int
    versions: list[VersionView]


@dataclass(frozen=True)
class VariantView:
    id: int
    key: str
    language: str
    topics: list[str]
    subject: str
    preheader: str
    html_size: int
    item_count: int
    problems: list[str]
    subscribers: int
    rendered_at: datetime


@dataclass(frozen=True)
class ApprovalView:
    approver: str
    at: datetime
    voided_at: datetime | None
    void_reason: str | None


@dataclass
class EditionView:
    id: int
    status: EditionStatus
    subjects: dict[str, str]
    period_start: datetime
    period_end: datetime
    scheduled_at: datetime | None
    send_started_at: datetime | None
    sent_at: datetime | None
    created_by: str
    stories: list[StoryView] = field(default_factory=list)
    variants: list[VariantView] = field(default_factory=list)
    approvals: list[ApprovalView] = field(default_factory=list)
    history: list[EditionTransition] = field(default_factory=list)
    stale: bool = False
    deliveries: dict[str, int] = field(default_factory=dict)

    @property
    def editable(self) -> bool:
        return self.status in EDITABLE

    @property
    def valid_approvers(self) -> list[str]:
        return [a.approver for a in self.approvals if a.voided_at is None]


def load_edition(session: Session, settings: Settings, edition_id: int, language: str) -> EditionView:
    edition = get_edition(session, edition_id)
    view = EditionView(
        id=edition.id,
        status=edition.status,
        subjects=dict(edition.subjects or {}),
        period_start=edition.period_start,
        period_end=edition.period_end,
        scheduled_at=edition.scheduled_at,
        send_started_at=edition.send_started_at,
        sent_at=edition.sent_at,
        created_by=edition.created_by,
    )
    for story in edition_stories(session, settings, edition):
        view.stories.append(
            StoryView(
                position=story.position,
                versions=[
                    VersionView(
                        news_item_id=v.item.id,
                        title=v.item.title,
                        language=v.item.language,
                        excluded=v.excluded,
                        link=v.item.link,
                    )
                    for v in story.versions
                ],
            )
        )
    audience = variant_subscriber_counts(session, settings)
    variants = session.scalars(
        select(EditionVariant)
        .where(EditionVariant.edition_id == edition.id)
        .order_by(EditionVariant.language, EditionVariant.interests)
    )
    for variant in variants:
        view.variants.append(
            VariantView(
                id=variant.id,
                key=variant_key(variant.language, variant.interests),
                language=variant.language,
                topics=topic_labels(settings, variant.interests, language),
                subject=variant.subject,
                preheader=variant.preheader,
                html_size=variant.html_size,
                item_count=variant.item_count,
                problems=[line for line in (variant.problems or "").splitlines() if line.strip()],
                subscribers=audience.get((variant.language, variant.interests), 0),
                rendered_at=variant.rendered_at,
            )
        )
    approvals = session.scalars(select(Approval).where(Approval.edition_id == edition.id).order_by(Approval.at))
    view.approvals = [ApprovalView(a.approver, a.at, a.voided_at, a.void_reason) for a in approvals]
    view.history = list(
        session.scalars(
            select(EditionTransition)
            .where(EditionTransition.edition_id == edition.id)
            .order_by(EditionTransition.at.desc(), EditionTransition.id.desc())
            .limit(20)
        )
    )
    if view.editable:
        view.stale = not view.variants or edition.render_fingerprint != render_fingerprint(settings)
    view.deliveries = delivery_counts(session, edition.id)
    return view


def _back(edition_id: int, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"/staff/editions/{edition_id}{anchor}", status_code=303)


def web_hint(text: PageText, hint: Hint) -> str:
    """The staff pages' wording of a domain error's next step (the buttons of the edition page)."""
    hints = {
        NextStep.SUBMIT: text.plain("Use “Submit for review” first."),
        NextStep.APPROVE: text.plain("An approver uses “Approve every variant” on this page."),
        NextStep.RESUME: text.plain("Use “Resume” first."),
        NextStep.SCHEDULE: text.plain("Give a send time in the “Schedule” form."),
        NextStep.SEND_NOW: text.plain("To send it now, choose a time a minute from now."),
        NextStep.SEND_TIME: text.plain("Give a date and time such as 2026-12-01 09:00."),
        NextStep.APPROVER: text.plain("Log in as the person approving."),
    }
    return hints[hint.step]


def refusal_line(text: PageText, exc: BulletinError) -> str:
    """A domain error's line, followed by the staff pages' wording of its next step."""
    return f"{exc}. {web_hint(text, exc.hint)}" if exc.hint else str(exc)


async def _act(
    request: Request, user: StaffUser, edition_id: int, work: Callable[[Session], object], done: str, anchor: str = ""
) -> Response:
    """Run one action in a transaction; show its outcome (or its one-line refusal) on the edition page."""
    try:
        await write(request, work)
    except BulletinError as exc:
        flash(request, refusal_line(page_language(request), exc), "error")
    else:
        flash(request, done, "success")
    return _back(edition_id, anchor)


async def _refresh(request: Request, settings: Settings, edition_id: int, actor: str) -> str | None:
    """After a change of content: render once outside the write, void an approval it breaks, store the previews.

    Returns the refusal line when the previews could not be stored.
    """
    try:
        await run_in_threadpool(lambda: refresh_edition(engine_of(request), settings, edition_id, actor=actor))
    except BulletinError as exc:
        return refusal_line(page_language(request), exc)
    return None


@staff_view()
async def edition_page(request: Request, user: StaffUser) -> Response:
    """GET /staff/editions/{id}: stories, the preview grid and the actions."""
    settings = settings_of(request)
    text = page_language(request)
    edition_id = int(request.path_params["edition_id"])
    view = await read(request, lambda session: load_edition(session, settings, edition_id, text.language))
    return render(
        request,
        "staff/edition.html",
        {
            "staff": user,
            "edition": view,
            "subject": view.subjects.get(text.language) or next(iter(view.subjects.values()), ""),
            "budget": settings.compose.max_html_bytes,
            "timezone": settings.schedule.timezone,
            "approvals_required": settings.workflow.approvals_required,
            "language_name": language_name,
            "can_edit": user.can(StaffRole.EDITOR) and view.editable,
            "can_approve": user.can(StaffRole.APPROVER),
        },
        text=text,
        headers={"Content-Security-Policy": PREVIEW_GRID_POLICY},
    )


def fill_placeholders(content: str, marker: str, *, name: str | None, base_url: str, as_html: bool) -> str:
    """A variant with sample values in its per-recipient slots, for previews and tests.

    The links lead to a page that says they are samples; they never act on a real subscriber.
    """
    values = placeholders.sample_values(base_url, name, "sample-link-of-a-preview")
    return placeholders.fill(content, marker, values, html=as_html)


@staff_view()
async def variant_frame(request: Request, user: StaffUser) -> Response:
    """GET /staff/editions/{id}/variants/{variant}/html|text: one rendered variant, for the preview frames."""
    settings = settings_of(request)
    edition_id = int(request.path_params["edition_id"])
    variant_id = int(request.path_params["variant_id"])
    part = str(request.path_params["part"])
    if part not in ("html", "text"):
        raise NotFound("no such part of a variant (html or text)")

    def work(session: Session) -> tuple[str, str, str]:
        variant = session.get(EditionVariant, variant_id)
        if variant is None or variant.edition_id != edition_id:
            raise NotFound(f"edition {edition_id} has no variant {variant_id}")
        return variant.html, variant.text, placeholders.edition_marker(session, edition_id)

    html, text, marker = await read(request, work)
    if part == "text":
        return PlainTextResponse(
            fill_placeholders(text, marker, name=None, base_url=settings.web.base_url, as_html=False)
        )
    return Response(
        fill_placeholders(html, marker, name=None, base_url=settings.web.base_url, as_html=True),
        media_type="text/html",
        headers={"Content-Security-Policy": EMAIL_FRAME_POLICY, "X-Frame-Options": "SAMEORIGIN"},
    )


@staff_view(StaffRole.EDITOR)
async def arrange_items(request: Request, user: StaffUser) -> Response:
    """POST /staff/editions/{id}/items: move a story up or down, exclude or include a version."""
    settings = settings_of(request)
    text = page_language(request)
    edition_id = int(request.path_params["edition_id"])
    form = await request.form()
    action = str(form.get("action", ""))
    item_param = str(form.get("news_item_id", ""))
    if action not in ARRANGE_ACTIONS or not item_param.isdigit():
        flash(request, text.plain("Unknown change."), "error")
        return _back(edition_id)
    news_item_id = int(item_param)

    def work(session: Session) -> None:
        edition = editions.get_edition(session, edition_id)
        if action in ("up", "down"):
            stories = editions.edition_stories(session, settings, edition)
            current = next((s.position for s in stories if any(v.item.id == news_item_id for v in s.versions)), None)
            if current is None:
                raise NotFound(f"news item {news_item_id} is not in edition {edition_id}")
            target = current - 1 if action == "up" else current + 1
            if not 1 <= target <= len(stories):
                raise InvalidInput(text.plain("This story cannot move further."))
            editions.move_item(session, edition_id, news_item_id, target, settings=settings, actor=user.name)
        elif action == "exclude":
            editions.exclude_item(session, edition_id, news_item_id, settings=settings, actor=user.name)
        else:
            editions.include_item(session, edition_id, news_item_id, settings=settings, actor=user.name)

    try:
        await write(request, work)
    except BulletinError as exc:
        flash(request, refusal_line(text, exc), "error")
        return _back(edition_id, "#stories")
    problem = await _refresh(request, settings, edition_id, user.name)
    flash(request, problem or text.plain("The edition is updated."), "error" if problem else "success")
    return _back(edition_id, "#stories")


@staff_view(StaffRole.EDITOR)
async def render_variants(request: Request, user: StaffUser) -> Response:
    """POST /staff/editions/{id}/render: render the variants again (after a template or audience change)."""
    settings = settings_of(request)
    text = page_language(request)
    edition_id = int(request.path_params["edition_id"])

    def check(session: Session) -> bool:
        return editions.get_edition(session, edition_id).status in editions.EDITABLE

    if not await read(request, check):
        flash(request, text.plain("The previews of an edition that is sending or sent cannot change."), "error")
        return _back(edition_id, "#variants")
    problem = await _refresh(request, settings, edition_id, user.name)
    flash(request, problem or text.plain("The previews are up to date."), "error" if problem else "success")
    return _back(edition_id, "#variants")


@staff_view(StaffRole.EDITOR)
async def change_status(request: Request, user: StaffUser) -> Response:
    """POST /staff/editions/{id}/status: submit, reopen, pause, resume or cancel."""
    text = page_language(request)
    edition_id = int(request.path_params["edition_id"])
    form = await request.form()
    action = str(form.get("action", ""))
    needed = STATUS_ACTIONS.get(action)
    if needed is None:
        flash(request, text.plain("Unknown change."), "error")
        return _back(edition_id)
    if not user.can(needed):
        return forbidden(request, user, needed)
    operations = {
        "submit": lambda session: workflow.submit(session, edition_id, user.name),
        "reopen": lambda session: workflow.reopen(session, edition_id, user.name),
        "pause": lambda session: workflow.pause(session, edition_id, user.name),
        "resume": lambda session: workflow.resume(session, edition_id, user.name),
        "cancel": lambda session: workflow.cancel(session, edition_id, user.name),
    }
    messages = {
        "submit": text.plain("The edition is in review."),
        "reopen": text.plain("The edition is a draft again."),
        "pause": text.plain("The edition is paused."),
        "resume": text.plain("The edition is resumed."),
        "cancel": text.plain("The edition is cancelled."),
    }
    return await _act(request, user, edition_id, operations[action], messages[action])


@staff_view(StaffRole.APPROVER)
async def approve(request: Request, user: StaffUser) -> Response:
    """POST /staff/editions/{id}/approve: lock the approval to every variant's content hash."""

    settings = settings_of(request)
    text = page_language(request)
    edition_id = int(request.path_params["edition_id"])

    try:
        # Rendered once in a reading session, then recorded in a short transaction.
        await run_in_threadpool(approval.approve, engine_of(request), settings, edition_id, user.name)
    except BulletinError as exc:
        flash(request, refusal_line(text, exc), "error")
    else:
        flash(request, text.plain("Your approval is recorded."), "success")
    return _back(edition_id)


@staff_view(StaffRole.APPROVER)
async def schedule(request: Request, user: StaffUser) -> Response:
    """POST /staff/editions/{id}/schedule: set the send time, in the configured time zone."""

    settings = settings_of(request)
    text = page_language(request)
    edition_id = int(request.path_params["edition_id"])
    form = await request.form()
    when = str(form.get("at", "")).strip()
    if not when:
        flash(request, text.plain("Give a date and time for the send."), "error")
        return _back(edition_id)

    # A void approval is recorded in its own transaction first, as the CLI and the scheduler do:
    # the schedule is then refused, and the void stays.
    try:
        voided = await run_in_threadpool(
            lambda: approval.record_void(engine_of(request), settings, edition_id, actor=user.name)
        )
    except BulletinError as exc:
        flash(request, refusal_line(text, exc), "error")
        return _back(edition_id)
    if voided:
        flash(
            request,
            text.plain(
                "The approval is void because %(reasons)s: the edition is back in review and needs approval again.",
                reasons="; ".join(voided),
            ),
            "error",
        )
        return _back(edition_id)

    def work(session: Session) -> None:
        approval.schedule(session, settings, edition_id, when, user.name)

    return await _act(request, user, edition_id, work, text.plain("The send is scheduled."))


@staff_view(StaffRole.EDITOR)
async def test_send(request: Request, user: StaffUser) -> Response:
    """POST /staff/editions/{id}/test-send: mail one variant (or all) to the logged-in staff member."""
    settings = settings_of(request)
    text = page_language(request)
    edition_id = int(request.path_params["edition_id"])
    form = await request.form()
    choice = str(form.get("variant", "all"))
    if not user.email:
        flash(
            request,
            text.plain("Your account has no email address; an admin can add one with 'bulletin staff add --email'."),
            "error",
        )
        return _back(edition_id)

    def work(session: Session) -> list[VariantCopy]:
        query = select(EditionVariant).where(EditionVariant.edition_id == edition_id).order_by(EditionVariant.id)
        if choice != "all":
            if not choice.isdigit() or int(choice) > MAX_INTEGER_ID:
                raise NotFound("no such variant")
            query = query.where(EditionVariant.id == int(choice))
        marker = placeholders.edition_marker(session, edition_id)
        return [
            VariantCopy(edition_id, variant_key(v.language, v.interests), v.subject, v.html, v.text, marker)
            for v in session.scalars(query)
        ]

    copies = await read(request, work)
    if not copies:
        flash(request, text.plain("There is no rendered variant to send yet."), "error")
        return _back(edition_id)
    email = user.email
    try:
        await run_in_threadpool(send_tests, settings, email, user.name, text.language, copies)
    except Exception as exc:
        flash(request, text.plain("The test could not be sent: %(reason)s", reason=str(exc)), "error")
    else:
        flash(
            request,
            text.nplain(
                "%(count)s test message sent to %(address)s.",
                "%(count)s test messages sent to %(address)s.",
                len(copies),
                address=email,
            ),
            "success",
        )
    return _back(edition_id)


def send_tests(settings: Settings, email: str, name: str, language: str, copies: list[VariantCopy]) -> None:
    """Mail each variant to one staff member, marked as a test in their page language, with sample links."""
    for copy in copies:
        message = copy_for_tester(
            settings, copy, to_email=email, to_name=name, language=language, values=sample_values(settings, name)
        )
        send_one(settings, message)
