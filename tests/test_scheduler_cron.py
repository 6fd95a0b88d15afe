"""schedule.cron is read as a crontab line: 0 or 7 is Sunday, 1 is Monday."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bulletin.config import ConfigError, load_settings
from bulletin.cron import CronError, crontab_trigger

TORONTO = ZoneInfo("America/Toronto")
# A Monday.
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=TORONTO)


def next_fires(expression: str, count: int = 3) -> list[str]:
    trigger = crontab_trigger(expression, TORONTO)
    fires: list[str] = []
    previous = None
    now = MONDAY_NOON
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire.strftime("%a %d %H:%M"))
        previous = now = fire
    return fires


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 8 * * 1", ["Mon 30 08:00", "Mon 07 08:00", "Mon 14 08:00"]),
        ("0 8 * * 0", ["Sun 29 08:00", "Sun 06 08:00", "Sun 13 08:00"]),
        ("0 8 * * 7", ["Sun 29 08:00", "Sun 06 08:00", "Sun 13 08:00"]),
        ("0 8 * * 1-5", ["Tue 24 08:00", "Wed 25 08:00", "Thu 26 08:00"]),
        ("30 7 * * mon,fri", ["Fri 27 07:30", "Mon 30 07:30", "Fri 04 07:30"]),
        ("0 9 * * */3", ["Wed 25 09:00", "Sat 28 09:00", "Sun 29 09:00"]),
    ],
)
def test_weekdays_follow_crontab_numbering(expression: str, expected: list[str]) -> None:
    assert next_fires(expression) == expected


@pytest.mark.parametrize("expression", ["61 8 * * 1", "0 8 * * 8", "0 8 * *", "0 8 * * 5-1"])
def test_bad_lines_are_refused(expression: str) -> None:
    with pytest.raises(CronError):
        crontab_trigger(expression, TORONTO)


def test_a_bad_cron_line_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bulletin.toml"
    config.write_text('[schedule]\ncron = "61 8 * * 1"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bulletin\.toml: schedule\.cron: '61 8 \* \* 1' is not a valid"):
        load_settings(config)
