"""Staff login and logout; failed logins are throttled per account and per client address."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bulletin.app.staff import LoginResult, authenticate, login_delay
from bulletin.web.auth import current_staff, log_in, log_out, safe_next
from bulletin.web.pages import CSRF_FIELD, client_ip, csrf_valid, page_language, read, render, settings_of, write


async def login_page(request: Request) -> Response:
    """GET /staff/login."""
    next_page = safe_next(request.query_params.get("next"))
    if await current_staff(request) is not None:
        return RedirectResponse(next_page, status_code=303)
    return render(request, "staff/login.html", {"next": next_page, "error": None, "name": ""})


async def login_submit(request: Request) -> Response:
    """POST /staff/login."""
    text = page_language(request)
    form = await request.form()
    name = str(form.get("name", "")).strip()[:120]
    password = str(form.get("password", ""))[:1024]
    next_page = safe_next(str(form.get("next", "")))
    if not csrf_valid(request, form.get(CSRF_FIELD)):
        error = text.plain("This form had expired. Please log in again.")
        return render(request, "staff/login.html", {"next": next_page, "error": error, "name": name}, status_code=403)
    settings = settings_of(request)
    ip = client_ip(request)
    # A much-attacked account answers slowly rather than not at all, so its owner still gets in.
    delay = await read(request, lambda session: login_delay(session, settings, name))
    if delay:
        await request.app.state.sleep(delay)

    def work(session: Session) -> LoginResult:
        return authenticate(session, settings, name, password, ip=ip)

    result = await write(request, work)
    if result.throttled:
        error = text.plain("Too many failed attempts. Please wait 15 minutes before trying again.")
        return render(
            request,
            "staff/login.html",
            {"next": next_page, "error": error, "name": name},
            status_code=429,
            headers={"Retry-After": "900"},
        )
    if result.member is None:
        error = text.plain("Wrong name or password.")
        return render(request, "staff/login.html", {"next": next_page, "error": error, "name": name}, status_code=401)
    await log_in(request, result.member)
    return RedirectResponse(next_page, status_code=303)


async def logout(request: Request) -> Response:
    """POST /staff/logout (a GET cannot log anyone out)."""
    form = await request.form()
    if csrf_valid(request, form.get(CSRF_FIELD)):
        await log_out(request)
    return RedirectResponse("/staff/login", status_code=303)
