"""Live delivery counts of an edition during a send; the page refreshes itself (no JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from bulletin.errors import NotFound
from bulletin.models import DeliveryState, Edition, EditionStatus
from bulletin.mta.ledger import delivery_counts
from bulletin.web.auth import StaffUser, staff_view
from bulletin.web.pages import page_language, read, render

REFRESH_SECONDS = 5
# The order in which the states are shown.
STATES = [state.value for state in DeliveryState]
DONE_STATES = (DeliveryState.SENT.value, DeliveryState.FAILED.value, DeliveryState.SKIPPED.value)


@dataclass
class Progress:
    edition_id: int
    status: EditionStatus
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def settled(self) -> int:
        return sum(self.counts.get(state, 0) for state in DONE_STATES)

    @property
    def live(self) -> bool:
        return self.status in (EditionStatus.SENDING, EditionStatus.SCHEDULED)


def load_progress(session: Session, edition_id: int) -> Progress:
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFound(f"no edition {edition_id}")
    counts = delivery_counts(session, edition_id)
    return Progress(edition_id, edition.status, {state: int(counts.get(state, 0)) for state in STATES})


@staff_view()
async def progress_page(request: Request, user: StaffUser) -> Response:
    """GET /staff/editions/{id}/progress."""
    text = page_language(request)
    edition_id = int(request.path_params["edition_id"])
    progress = await read(request, lambda session: load_progress(session, edition_id))
    return render(
        request,
        "staff/progress.html",
        {"staff": user, "progress": progress, "refresh": REFRESH_SECONDS if progress.live else None},
        text=text,
    )
