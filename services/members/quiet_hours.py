"""Quiet hours: a daily window, in the section's time zone, when a member prefers not
to be woken (the alerts service decides what that means for an alert)."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo


class QuietHoursError(ValueError):
    pass


def parse_clock(text: str) -> time:
    """`HH:MM` (24 h) to a time; raise QuietHoursError otherwise."""
    parts = text.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() and 1 <= len(p) <= 2 for p in parts):
        raise QuietHoursError(f"{text!r} is not a time of day: write HH:MM, e.g. 23:00")
    hour, minute = int(parts[0]), int(parts[1])
    if hour > 23 or minute > 59:
        raise QuietHoursError(f"{text!r} is not a time of day: write HH:MM, e.g. 23:00")
    return time(hour, minute)


def check_window(start: time, end: time) -> None:
    """A window whose start equals its end is ambiguous (never or always): refuse it."""
    if start == end:
        raise QuietHoursError("quiet hours must start and end at different times")


def is_quiet(start: time, end: time, local: time) -> bool:
    """Whether `local` falls in [start, end); a window with start after end spans midnight."""
    if start < end:
        return start <= local < end
    return local >= start or local < end


def is_quiet_at(start: time, end: time, moment: datetime, timezone: str) -> bool:
    local = moment.astimezone(ZoneInfo(timezone)).time().replace(tzinfo=None)
    return is_quiet(start, end, local)
