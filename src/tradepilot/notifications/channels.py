"""Push channels: how a notification leaves the platform.

A channel turns one notification into one delivery job, enqueued in the caller's transaction
(so it exists exactly when the notification does) and retried by the job system. Email is
here; Telegram, Discord, Slack and Web Push are ``delivery.TargetedChannel`` instances (their
job is ``notifications.deliver``). Outbound calls to user-supplied hosts go through
``core/outbound.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tradepilot.notifications import constants as c
from tradepilot.notifications.models import Notification

if TYPE_CHECKING:
    from tradepilot.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: uuid.UUID
    email: str
    name: str | None
    timezone: str


class NotificationChannel(Protocol):
    name: str

    async def deliver(self, session: AsyncSession, notification: Notification,
                      recipient: Recipient) -> uuid.UUID | None:
        """Enqueue the delivery of ``notification`` in the caller's transaction; the job's id
        (None when the user has no destination on this channel)."""
        ...


TEMPLATE_BY_CATEGORY = {c.FILLS: "trade_notification", c.ORDERS: "trade_notification", c.ALERTS: "alert_triggered",
                        c.DAILY_REPORT: "performance_report", c.WEEKLY_REPORT: "performance_report"}
GENERIC_TEMPLATE = "notification"


class EmailChannel:
    """Through the core's EmailService: rendered now (a broken template fails here), sent as a job."""

    name = c.EMAIL

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def deliver(self, session: AsyncSession, notification: Notification, recipient: Recipient) -> uuid.UUID:
        template = TEMPLATE_BY_CATEGORY.get(notification.category, GENERIC_TEMPLATE)
        context = {"name": recipient.name, "title": notification.title, "body": notification.body,
                   "category": notification.category, "notification_id": str(notification.id),
                   "occurred_at": notification.created_at.isoformat(), "data": dict(notification.data or {})}
        job = await self.runtime.services["email"].send(session, to=recipient.email, template=template,
                                                        context=context, user_id=recipient.user_id,
                                                        message_key=f"notification-{notification.id}")
        return job.id  # type: ignore[no-any-return]
