"""Crontab lines for APScheduler, with crontab's own weekday numbering.

APScheduler 3 numbers weekdays from 0 = Monday, while a crontab line (and our config) uses
0 or 7 = Sunday, 1 = Monday. Numeric weekday fields are rewritten to day names first, so
``0 8 * * 1`` means Mondays as any admin expects.
"""

from __future__ import annotations

from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class CronError(ValueError):
    """A crontab line that cannot be used."""


def _weekday_token(token: str) -> str:
    base, _, step_text = token.partition("/")
    if not any(ch.isdigit() for ch in base) and not step_text:
        return token  # "*", a name or a range of names: the same in both conventions
    step = int(step_text) if step_text else 1
    if step < 1:
        raise CronError(f"bad step in weekday field {token!r}")
    if base == "*":
        first, last = 0, 6
    elif "-" in base:
        start, end = base.split("-", 1)
        first, last = _weekday_number(start), _weekday_number(end)
    else:
        first = _weekday_number(base)
        last = 6 if step_text else first
    if last < first:
        raise CronError(f"weekday range {base!r} runs backwards")
    return ",".join(DAY_NAMES[day % 7] for day in range(first, last + 1, step))


def _weekday_number(text: str) -> int:
    text = text.strip().lower()
    if text in DAY_NAMES:
        return DAY_NAMES.index(text)
    if not text.isdigit() or int(text) > 7:
        raise CronError(f"weekday {text!r} is not 0-7 or a day name")
    return int(text)


def crontab_trigger(expression: str, timezone: tzinfo) -> CronTrigger:
    """A trigger for a five-field crontab line (minute hour day month weekday)."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(f"{expression!r} needs five fields (minute hour day month weekday)")
    minute, hour, day, month, weekday = fields
    try:
        weekday = ",".join(_weekday_token(token) for token in weekday.split(","))
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=timezone)
    except (ValueError, TypeError) as exc:
        raise CronError(f"{expression!r} is not a valid crontab line: {exc}") from None
