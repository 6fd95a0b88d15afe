"""Errors a user can cause; the CLI and web edges turn them into one clear line."""

from __future__ import annotations


class BulletinError(Exception):
    """A problem the user can fix; its message is shown as is."""

    exit_code = 1


class NotFound(BulletinError):
    """A subscriber, news item or edition that does not exist."""


class InvalidInput(BulletinError):
    """A value that fails validation."""


class Conflict(BulletinError):
    """An action refused in the current state (illegal transition, send in progress)."""
