"""Quiet hours: a daily window, in the user's time zone, during which push channels wait.

Pure functions of a moment, so the rules are tested without a database or a clock. A window
may wrap midnight (22:00–07:00); the start is inside it, the end is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def parse_hhmm(text: str) -> time:
    """``"22:00"`` → ``time(22, 0)``; ValueError for anything else."""
    hours, _, minutes = text.partition(":")
    if len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError("use HH:MM")
    return time(int(hours), int(minutes))


def zone_of(name: str | None) -> ZoneInfo:
    """The user's IANA time zone; UTC when unset or unknown (never an error at delivery time)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    zone: ZoneInfo

    def holds(self, moment: datetime) -> bool:
        """True when ``moment`` falls inside the window."""
        local = moment.astimezone(self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, moment: datetime) -> datetime:
        """The first end of the window after ``moment``, in UTC (when held ones are released)."""
        local = moment.astimezone(self.zone)
        candidate = datetime.combine(local.date(), self.end, tzinfo=self.zone)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=self.zone)
        return candidate.astimezone(UTC)


def quiet_hours(start: str | None, end: str | None, zone: str | None) -> QuietHours | None:
    """The window, or None when the user has none."""
    if not start or not end:
        return None
    return QuietHours(parse_hhmm(start), parse_hhmm(end), zone_of(zone))
