"""Staff accounts: argon2 password hashes, roles, server-side login sessions and login throttling.

Failed logins slow an account down instead of locking it: past ``web.login_attempts``
failures in 15 minutes, every attempt on the account waits :func:`login_delay` seconds
(doubling with each failure, at most :data:`MAX_LOGIN_DELAY`) before its password is checked,
so an attacker cannot keep the real owner out. The client address that failed is what gets
refused: too many failures on one account, or on all accounts, from one address.

Roles are ranked: an approver can do what an editor does, an admin what an approver does.
Every staff page checks the role on the server with :func:`require_role`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from bulletin.app import throttle
from bulletin.app.subscribers import normalize_email
from bulletin.config import Settings
from bulletin.errors import BulletinError, Conflict, InvalidInput, NotFound
from bulletin.models import StaffMember, StaffRole, StaffSession, utcnow

MIN_PASSWORD_LENGTH = 10
LOGIN_WINDOW = timedelta(minutes=15)
# The longest an attempt on a much-attacked account waits before its password is checked.
MAX_LOGIN_DELAY = 30.0
# A client IP may fail this many times more than one account before it is refused.
IP_FACTOR = 4
ROLE_RANK = {StaffRole.EDITOR: 1, StaffRole.APPROVER: 2, StaffRole.ADMIN: 3}

_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a real password, only spends time")


class Forbidden(BulletinError):
    """A staff member whose role does not allow the action."""


@dataclass(frozen=True)
class LoginResult:
    member: StaffMember | None
    throttled: bool = False


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password:
        raise InvalidInput("the password must not start or end with spaces")


def parse_role(value: str) -> StaffRole:
    try:
        return StaffRole(value.strip().lower())
    except ValueError:
        choices = ", ".join(role.value for role in StaffRole)
        raise InvalidInput(f"unknown role {value!r} (choose one of: {choices})") from None


def has_role(member: StaffMember, required: StaffRole) -> bool:
    return ROLE_RANK[member.role] >= ROLE_RANK[required]


def require_role(member: StaffMember, required: StaffRole) -> None:
    """Raise Forbidden unless the member's role is at least ``required``."""
    if not has_role(member, required):
        raise Forbidden(f"this needs the {required.value} role; {member.name} is {member.role.value}")


def find_staff(session: Session, name: str) -> StaffMember | None:
    return session.scalar(select(StaffMember).where(func.lower(StaffMember.name) == name.strip().lower()))


def get_staff(session: Session, name: str) -> StaffMember:
    member = find_staff(session, name)
    if member is None:
        raise NotFound(f"no staff member named {name!r}")
    return member


def add_staff(session: Session, name: str, *, role: StaffRole, password: str, email: str | None = None) -> StaffMember:
    """Create a staff account; the password is stored only as an argon2 hash."""
    name = name.strip()
    if not name or len(name) > 120 or any(ch.isspace() for ch in name):
        raise InvalidInput("a staff name is one word of at most 120 characters (e.g. 'marie')")
    if find_staff(session, name) is not None:
        raise Conflict(f"a staff member named {name!r} already exists")
    check_password_strength(password)
    if email:
        email = normalize_email(email)
    member = StaffMember(name=name, role=role, email=email or None, password_hash=hash_password(password))
    session.add(member)
    session.flush()
    return member


def set_password(session: Session, name: str, password: str) -> StaffMember:
    """Set a new password; every open login of the member ends."""
    member = get_staff(session, name)
    check_password_strength(password)
    member.password_hash = hash_password(password)
    end_sessions(session, member)
    return member


def list_staff(session: Session) -> list[StaffMember]:
    return list(session.scalars(select(StaffMember).order_by(StaffMember.name)))


def remove_staff(session: Session, name: str) -> None:
    member = get_staff(session, name)
    end_sessions(session, member)
    session.delete(member)


# ---------------------------------------------------------------------------
# Server-side login sessions


@dataclass(frozen=True)
class OpenSession:
    """A staff login as ``bulletin staff sessions`` lists it."""

    name: str
    started: datetime
    ip: str | None
    user_agent: str | None


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def start_session(
    session: Session,
    member: StaffMember,
    *,
    ip: str | None,
    user_agent: str | None,
    max_age: timedelta,
    now: datetime | None = None,
) -> str:
    """Record a new login and return its random id (for the cookie; only its digest is stored).

    Logins older than ``max_age`` (of anyone) are deleted on the way: they can no longer be used.
    """
    moment = now or utcnow()
    session.execute(delete(StaffSession).where(StaffSession.created_at <= moment - max_age))
    session_id = secrets.token_urlsafe(32)
    session.add(
        StaffSession(
            id_hash=_session_hash(session_id),
            staff_id=member.id,
            created_at=moment,
            ip=ip[:64] if ip else None,
            user_agent=user_agent[:400] if user_agent else None,
        )
    )
    session.flush()
    return session_id


def session_member(
    session: Session, session_id: str, max_age: timedelta, *, now: datetime | None = None
) -> StaffMember | None:
    """The member of an open login, or None if it was ended, has expired or never existed."""
    if not session_id or len(session_id) > 100:
        return None
    row = session.get(StaffSession, _session_hash(session_id))
    if row is None or row.created_at <= (now or utcnow()) - max_age:
        return None
    return session.get(StaffMember, row.staff_id)


def end_session(session: Session, session_id: str) -> None:
    """End one login (logout): the cookie stops working, wherever a copy of it is."""
    session.execute(delete(StaffSession).where(StaffSession.id_hash == _session_hash(session_id)))


def end_sessions(session: Session, member: StaffMember) -> int:
    """End every login of a member; return how many there were."""
    result = session.execute(delete(StaffSession).where(StaffSession.staff_id == member.id))
    return int(getattr(result, "rowcount", 0) or 0)


def list_sessions(
    session: Session, *, now: datetime | None = None, max_age: timedelta | None = None
) -> list[OpenSession]:
    """Open logins, oldest first; with ``max_age``, expired ones are left out."""
    query = select(StaffMember.name, StaffSession.created_at, StaffSession.ip, StaffSession.user_agent).join(
        StaffMember, StaffMember.id == StaffSession.staff_id
    )
    if max_age is not None:
        query = query.where(StaffSession.created_at > (now or utcnow()) - max_age)
    rows = session.execute(query.order_by(StaffSession.created_at, StaffMember.name))
    return [OpenSession(name, started, ip, agent) for name, started, ip, agent in rows]


def _login_keys(session: Session, name: str, ip: str) -> tuple[str, str, str]:
    canonical = name.strip().lower()
    return (
        throttle.rate_key(session, canonical),
        throttle.rate_key(session, f"{canonical}\0{ip}"),
        throttle.rate_key(session, ip),
    )


def login_delay(session: Session, settings: Settings, name: str, *, now: datetime | None = None) -> float:
    """Seconds an attempt on this account waits before its password is checked (0 while few failed)."""
    name_key = throttle.existing_rate_key(session, name.strip().lower())
    if name_key is None:
        return 0.0
    failures = throttle.count_recent(session, "login-name", name_key, LOGIN_WINDOW, now=now)
    excess = failures - settings.web.login_attempts
    if excess < 0:
        return 0.0
    return float(min(2.0 ** min(excess, 16), MAX_LOGIN_DELAY))


def authenticate(
    session: Session, settings: Settings, name: str, password: str, *, ip: str, now: datetime | None = None
) -> LoginResult:
    """Check a login; refuse it (throttled) while this client address has failed too often.

    The account itself is never refused: the web page waits :func:`login_delay` first.
    """
    name_key, pair_key, ip_key = _login_keys(session, name, ip)
    limit = settings.web.login_attempts
    if not throttle.allowed(session, "login-pair", pair_key, limit, LOGIN_WINDOW, now=now) or not throttle.allowed(
        session, "login-ip", ip_key, limit * IP_FACTOR, LOGIN_WINDOW, now=now
    ):
        return LoginResult(member=None, throttled=True)
    member = find_staff(session, name) if name.strip() else None
    if member is not None and _verify(member.password_hash, password):
        if _hasher.check_needs_rehash(member.password_hash):
            member.password_hash = hash_password(password)
        throttle.clear_events(session, "login-name", name_key)
        throttle.clear_events(session, "login-pair", pair_key)
        return LoginResult(member=member)
    if member is None:
        _verify(_DUMMY_HASH, password)
    throttle.record_event(session, "login-name", name_key, now=now)
    throttle.record_event(session, "login-pair", pair_key, now=now)
    throttle.record_event(session, "login-ip", ip_key, now=now)
    return LoginResult(member=None)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False
