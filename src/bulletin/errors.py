"""Errors a user can cause; the CLI and web edges turn them into one clear line.

A domain error says what is wrong in plain words and never names a command, an option or a
button: when there is an obvious next step it carries a :class:`Hint`, and each edge words that
step in its own terms (``bulletin edition submit 12`` on the command line, the button's name on
the staff pages).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class NextStep(enum.StrEnum):
    """The next step a refusal points to."""

    SUBMIT = "submit"
    APPROVE = "approve"
    RESUME = "resume"
    SCHEDULE = "schedule"
    SEND_NOW = "send-now"
    SEND_TIME = "send-time"
    APPROVER = "approver"


@dataclass(frozen=True)
class Hint:
    """A next step and the edition it is about, for the edge to word."""

    step: NextStep
    edition_id: int | None = None


class BulletinError(Exception):
    """A problem the user can fix; its message is shown as is, followed by the edge's wording of its hint."""

    exit_code = 1
    hint: Hint | None = None

    def __init__(self, message: str = "", *, hint: Hint | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class NotFound(BulletinError):
    """A subscriber, news item or edition that does not exist."""


class InvalidInput(BulletinError):
    """A value that fails validation."""


class Conflict(BulletinError):
    """An action refused in the current state (illegal transition, send in progress)."""
