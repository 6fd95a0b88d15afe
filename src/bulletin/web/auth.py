"""Staff logins kept in the signed session cookie, checked against the database on every request."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bulletin.app.staff import ROLE_RANK, session_stamp
from bulletin.models import StaffMember, StaffRole
from bulletin.web.pages import CSRF_FIELD, csrf_token, csrf_valid, read, render, settings_of

SESSION_KEY = "staff"


@dataclass(frozen=True)
class StaffUser:
    """The logged-in staff member, detached from the database."""

    id: int
    name: str
    role: StaffRole
    email: str | None

    def can(self, role: StaffRole | str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[StaffRole(role)]


def log_in(request: Request, member: StaffMember) -> None:
    """Start a fresh session (a new CSRF token too), so a cookie planted before login is useless."""
    request.session.clear()
    request.session[SESSION_KEY] = {"id": member.id, "stamp": session_stamp(member), "at": int(time.time())}
    csrf_token(request)


def log_out(request: Request) -> None:
    language = request.session.get("lang")
    request.session.clear()
    if language:
        request.session["lang"] = language


def _member_of(session: Session, data: dict[str, object]) -> StaffUser | None:
    member_id = data.get("id")
    if not isinstance(member_id, int):
        return None
    member = session.get(StaffMember, member_id)
    if member is None or data.get("stamp") != session_stamp(member):
        return None
    return StaffUser(id=member.id, name=member.name, role=member.role, email=member.email)


async def current_staff(request: Request) -> StaffUser | None:
    """The staff member of this session, if the login is still valid (account kept, password unchanged)."""
    data = request.session.get(SESSION_KEY)
    if not isinstance(data, dict):
        return None
    started = data.get("at")
    max_age = settings_of(request).web.session_hours * 3600
    if not isinstance(started, int) or time.time() - started > max_age:
        return None
    return await read(request, lambda session: _member_of(session, data))


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse("/staff/login?next=" + quote(target, safe="/"), status_code=303)


def forbidden(request: Request, user: StaffUser, needed: StaffRole) -> Response:
    return render(request, "staff/forbidden.html", {"staff": user, "needed": needed.value}, status_code=403)


def safe_next(value: str | None) -> str:
    """Only redirect to a staff page of this site after login."""
    if value and value.startswith("/staff/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/staff/"


StaffHandler = Callable[[Request, StaffUser], Awaitable[Response]]


def staff_view(
    role: StaffRole = StaffRole.EDITOR,
) -> Callable[[StaffHandler], Callable[[Request], Awaitable[Response]]]:
    """Wrap a staff page: login required, role checked on the server, CSRF checked on every POST."""

    def decorate(handler: StaffHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = await current_staff(request)
            if user is None:
                if request.method in ("GET", "HEAD"):
                    return login_redirect(request)
                return render(request, "staff/login_needed.html", status_code=401)
            if not user.can(role):
                return forbidden(request, user, role)
            if request.method == "POST":
                form = await request.form()
                if not csrf_valid(request, form.get(CSRF_FIELD)):
                    return render(request, "form_expired.html", {"staff": user}, status_code=403)
            return await handler(request, user)

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return decorate
