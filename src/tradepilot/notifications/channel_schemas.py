"""Request and response bodies of the channel routes (/api/notifications/channels, /devices)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from tradepilot.core.schemas import Schema


class TargetOut(Schema):
    id: uuid.UUID
    channel: str
    label: str | None
    destination: str = Field(description="Enough to recognise it, never the whole secret URL")
    trading_commands: bool = Field(description="Telegram: /stop and other changing commands allowed")
    created_at: datetime


class ChannelsOut(Schema):
    targets: list[TargetOut]
    telegram_configured: bool
    telegram_bot_username: str | None
    webpush_public_key: str = Field(description="The VAPID applicationServerKey to subscribe with")


class TelegramLinkOut(Schema):
    code: str
    command: str = Field(description="Send this to the bot from a private chat")
    link: str | None = Field(description="https://t.me/<bot>?start=<code> when the bot's name is configured")
    expires_at: datetime


class TelegramSettingsIn(Schema):
    trading_commands: bool


class WebhookIn(Schema):
    url: str = Field(min_length=8, max_length=2000, examples=["https://discord.com/api/webhooks/123/abc"])
    label: str | None = Field(default=None, max_length=100)


class PushKeys(Schema):
    p256dh: str = Field(min_length=16, max_length=200)
    auth: str = Field(min_length=8, max_length=100)


class DeviceIn(Schema):
    """A browser's PushSubscription (``subscription.toJSON()``)."""

    endpoint: str = Field(min_length=8, max_length=2000)
    keys: PushKeys
    expirationTime: Any = None  # the browser's own field name; ignored
    label: str | None = Field(default=None, max_length=100)


class AttemptOut(Schema):
    at: datetime
    attempt: int
    outcome: Literal["sent", "failed", "rate_limited", "gone", "dead"]
    target_id: uuid.UUID | None
    status_code: int | None
    detail: str | None
    retry_after_seconds: float | None


class DeliveryOut(Schema):
    channel: str
    job_id: uuid.UUID | None
    state: str = Field(description="queued | running | delivered | dead | failed | cancelled")
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    error: str | None
    log: list[AttemptOut]


class DeliveriesOut(Schema):
    items: list[DeliveryOut]
