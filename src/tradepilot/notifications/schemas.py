"""Request and response bodies of /api/notifications."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tradepilot.core.schemas import Schema
from tradepilot.notifications import constants as c
from tradepilot.notifications.quiet_hours import parse_hhmm

Category = Literal["fills", "orders", "alerts", "strategies", "security", "reports", "daily_report",
                   "weekly_report", "notes", "announcements", "digest"]
ConfigurableCategory = Literal["fills", "orders", "alerts", "strategies", "security", "reports", "daily_report",
                               "weekly_report"]
Channel = Literal["in_app", "email", "telegram", "discord", "slack", "webpush"]


class NotificationOut(Schema):
    id: uuid.UUID
    category: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None
    held_until: datetime | None = Field(description="Set while quiet hours hold it back from push channels")


class NotificationCreate(Schema):
    """Your own note; `broadcast: true` (administrators) sends it to every active user."""

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=4000)
    broadcast: bool = False

    @field_validator("title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("title must not be blank")
        return value.strip()


class BroadcastOut(Schema):
    recipients: int


class ReadAllOut(Schema):
    marked: int


class QuietHoursIn(Schema):
    start: str = Field(description="HH:MM in your time zone (your profile's `timezone`)", examples=["22:00"])
    end: str = Field(examples=["07:00"])

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        parse_hhmm(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursIn:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class SettingsUpdate(Schema):
    """Only what is sent changes. `channels`: per category, the channels to use (empty: none);
    `quiet_hours: null` removes them."""

    channels: dict[ConfigurableCategory, list[Channel]] | None = None
    quiet_hours: QuietHoursIn | None = None

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value is not None:
            for channels in value.values():
                if len(channels) > len(c.CHANNELS):
                    raise ValueError("a channel is listed twice")
        return value


class SettingsOut(Schema):
    channels: dict[str, list[str]]
    quiet_hours: QuietHoursIn | None
    timezone: str
    available_channels: list[str]
