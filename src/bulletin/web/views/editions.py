"""The staff home page: editions, newest first, with their state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from bulletin.models import Approval, Edition, EditionStatus, EditionVariant
from bulletin.web.auth import StaffUser, staff_view
from bulletin.web.pages import page_language, read, render

PAGE_SIZE = 50


@dataclass(frozen=True)
class EditionRow:
    id: int
    status: EditionStatus
    subject: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    scheduled_at: datetime | None
    sent_at: datetime | None
    variants: int
    approvals: int


def edition_rows(
    session: Session, language: str, *, before: int | None = None, limit: int = PAGE_SIZE
) -> list[EditionRow]:
    """The newest editions (ids below ``before``), with their variant and valid approval counts."""
    variants = select(EditionVariant.edition_id, func.count().label("n")).group_by(EditionVariant.edition_id).subquery()
    approvals = (
        select(Approval.edition_id, func.count().label("n"))
        .where(Approval.voided_at.is_(None))
        .group_by(Approval.edition_id)
        .subquery()
    )
    query = (
        select(Edition, func.coalesce(variants.c.n, 0), func.coalesce(approvals.c.n, 0))
        .outerjoin(variants, variants.c.edition_id == Edition.id)
        .outerjoin(approvals, approvals.c.edition_id == Edition.id)
        .order_by(Edition.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(Edition.id < before)
    rows = []
    for edition, variant_count, approval_count in session.execute(query):
        subjects = edition.subjects or {}
        subject = subjects.get(language) or next(iter(subjects.values()), "")
        rows.append(
            EditionRow(
                id=edition.id,
                status=edition.status,
                subject=subject,
                period_start=edition.period_start,
                period_end=edition.period_end,
                created_at=edition.created_at,
                scheduled_at=edition.scheduled_at,
                sent_at=edition.sent_at,
                variants=int(variant_count),
                approvals=int(approval_count),
            )
        )
    return rows


@staff_view()
async def editions_page(request: Request, user: StaffUser) -> Response:
    """GET /staff/: the editions list."""
    text = page_language(request)
    before_param = request.query_params.get("before", "")
    before = int(before_param) if before_param.isdigit() else None
    rows = await read(request, lambda session: edition_rows(session, text.language, before=before))
    older = rows[-1].id if len(rows) == PAGE_SIZE else None
    return render(request, "staff/editions.html", {"staff": user, "editions": rows, "older": older}, text=text)
