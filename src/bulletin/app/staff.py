"""Staff accounts: argon2 password hashes, roles and login throttling.

Roles are ranked: an approver can do what an editor does, an admin what an approver does.
Every staff page checks the role on the server with :func:`require_role`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bulletin.app import throttle
from bulletin.app.subscribers import normalize_email
from bulletin.config import Settings
from bulletin.errors import BulletinError, Conflict, InvalidInput, NotFound
from bulletin.models import StaffMember, StaffRole

MIN_PASSWORD_LENGTH = 10
LOGIN_WINDOW = timedelta(minutes=15)
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
    member = get_staff(session, name)
    check_password_strength(password)
    member.password_hash = hash_password(password)
    return member


def list_staff(session: Session) -> list[StaffMember]:
    return list(session.scalars(select(StaffMember).order_by(StaffMember.name)))


def remove_staff(session: Session, name: str) -> None:
    session.delete(get_staff(session, name))


def session_stamp(member: StaffMember) -> str:
    """Changes when the password changes, so that older login cookies stop working."""
    return throttle.rate_key(member.password_hash)[:16]


def authenticate(
    session: Session, settings: Settings, name: str, password: str, *, ip: str, now: datetime | None = None
) -> LoginResult:
    """Check a login, refusing it while the account or the client IP has too many recent failures."""
    name_key = throttle.rate_key(name)
    ip_key = throttle.rate_key(ip)
    limit = settings.web.login_attempts
    if not throttle.allowed(session, "login-name", name_key, limit, LOGIN_WINDOW, now=now) or not throttle.allowed(
        session, "login-ip", ip_key, limit * IP_FACTOR, LOGIN_WINDOW, now=now
    ):
        return LoginResult(member=None, throttled=True)
    member = find_staff(session, name) if name.strip() else None
    if member is not None and _verify(member.password_hash, password):
        if _hasher.check_needs_rehash(member.password_hash):
            member.password_hash = hash_password(password)
        throttle.clear_events(session, "login-name", name_key)
        return LoginResult(member=member)
    if member is None:
        _verify(_DUMMY_HASH, password)
    throttle.record_event(session, "login-name", name_key, now=now)
    throttle.record_event(session, "login-ip", ip_key, now=now)
    return LoginResult(member=None)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False
