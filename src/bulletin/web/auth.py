"""Staff logins: a random session id in the signed cookie, checked against ``staff_sessions`` on every request.

Ending the row (logout, password change, account removal, ``bulletin staff sessions --end``)
ends the login at once, even for a copy of the cookie taken earlier.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bulletin.app.staff import ROLE_RANK, end_session, session_member, start_session
from bulletin.models import StaffMember, StaffRole
from bulletin.models.base import MAX_INTEGER_ID
from bulletin.web.pages import (
    CSRF_FIELD,
    client_ip,
    csrf_token,
    csrf_valid,
    read,
    render,
    settings_of,
    user_agent,
    write,
)

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


async def log_in(request: Request, member: StaffMember) -> None:
    """Start a fresh session (a new CSRF token too), so a cookie planted before login is useless."""
    ip, agent = client_ip(request), user_agent(request)
    max_age = timedelta(hours=settings_of(request).web.session_hours)
    session_id = await write(
        request, lambda session: start_session(session, member, ip=ip, user_agent=agent, max_age=max_age)
    )
    request.session.clear()
    request.session[SESSION_KEY] = {"sid": session_id}
    csrf_token(request)


async def log_out(request: Request) -> None:
    """End the login on the server, then forget the cookie's contents."""
    data = request.session.get(SESSION_KEY)
    session_id = data.get("sid") if isinstance(data, dict) else None
    if isinstance(session_id, str):
        await write(request, lambda session: end_session(session, session_id))
    language = request.session.get("lang")
    request.session.clear()
    if language:
        request.session["lang"] = language


async def current_staff(request: Request) -> StaffUser | None:
    """The staff member of this session, while the login is open on the server and not expired."""
    data = request.session.get(SESSION_KEY)
    session_id = data.get("sid") if isinstance(data, dict) else None
    if not isinstance(session_id, str):
        return None
    max_age = timedelta(hours=settings_of(request).web.session_hours)

    def work(session: Session) -> StaffUser | None:
        member = session_member(session, session_id, max_age)
        if member is None:
            return None
        return StaffUser(id=member.id, name=member.name, role=member.role, email=member.email)

    return await read(request, work)


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
            # An id no row can have is simply not found (the database would refuse the query).
            if any(isinstance(value, int) and value > MAX_INTEGER_ID for value in request.path_params.values()):
                raise HTTPException(404)
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
