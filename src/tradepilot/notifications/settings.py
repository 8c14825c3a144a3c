"""A user's notification settings: channels per category, quiet hours (defaults when unset)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.notifications import constants as c
from tradepilot.notifications.models import NotificationSettings
from tradepilot.notifications.quiet_hours import QuietHours, quiet_hours


@dataclass(frozen=True, slots=True)
class Preferences:
    channels: dict[str, tuple[str, ...]]
    quiet_start: str | None
    quiet_end: str | None
    timezone: str

    def channels_for(self, category: str) -> tuple[str, ...]:
        if category in c.CONFIGURABLE:
            return self.channels.get(category, c.DEFAULT_CHANNELS[category])
        return (c.IN_APP,)  # notes, announcements: the centre only

    def window(self) -> QuietHours | None:
        return quiet_hours(self.quiet_start, self.quiet_end, self.timezone)


def preferences_of(row: NotificationSettings | None, timezone: str) -> Preferences:
    stored = dict(row.channels) if row is not None else {}
    channels = {cat: tuple(ch for ch in stored.get(cat, c.DEFAULT_CHANNELS[cat]) if ch in c.CHANNELS)
                for cat in c.CONFIGURABLE}
    return Preferences(channels=channels, quiet_start=row.quiet_start if row else None,
                       quiet_end=row.quiet_end if row else None, timezone=timezone)


async def load_preferences(session: AsyncSession, user_id: uuid.UUID, timezone: str) -> Preferences:
    return preferences_of(await session.get(NotificationSettings, user_id), timezone)


async def save_preferences(session: AsyncSession, user_id: uuid.UUID, *, channels: dict[str, list[str]] | None,
                           quiet: tuple[str | None, str | None] | None, now: datetime) -> NotificationSettings:
    """Change what was sent: ``channels`` per category (merged), ``quiet`` (None, None) removes them."""
    row = await session.get(NotificationSettings, user_id)
    if row is None:
        row = NotificationSettings(user_id=user_id, channels={}, quiet_start=None, quiet_end=None, updated_at=now)
        session.add(row)
    if channels is not None:
        row.channels = {**dict(row.channels or {}), **{k: list(dict.fromkeys(v)) for k, v in channels.items()}}
    if quiet is not None:
        row.quiet_start, row.quiet_end = quiet
    row.updated_at = now
    await session.flush()
    return row
