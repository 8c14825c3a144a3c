"""Tables of the notification centre.

``notification`` rows are what the user sees in ``/api/notifications``; ``held_until`` is set
while quiet hours hold a notification back from the push channels, and ``digest_id`` once it
was merged into a digest. ``notification_delivery`` is the delivery log: one row per
notification and push channel, pointing at the job that delivers it. ``notification_settings``
holds a user's channel choices and quiet hours. (The outbox consumer's queue is the
``notify`` flag of ``outbox_event``: core/outbox_models.py.)
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)


class Notification(UUIDPrimaryKey, Base):
    __tablename__ = "notification"
    __table_args__ = (
        # one notification per (user, outbox event): a second line of defence behind consume_once
        UniqueConstraint("user_id", "source_event_id"),
        Index("ix_notification_user_created", "user_id", "created_at", "id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(24))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(String(4000))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source_event_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]
    held_until: Mapped[datetime | None] = mapped_column(index=True)  # quiet hours: not pushed yet
    digest_id: Mapped[uuid.UUID | None]  # the digest it was merged into


class NotificationDelivery(UUIDPrimaryKey, Base):
    """One notification sent on one push channel: the job that carries it."""

    __tablename__ = "notification_delivery"
    __table_args__ = (UniqueConstraint("notification_id", "channel"),)

    notification_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notification.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(24))
    job_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime]


class NotificationSettings(Base):
    """A user's channels per category and quiet hours (absent row: the defaults)."""

    __tablename__ = "notification_settings"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"),
                                               primary_key=True)
    channels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # "22:00", the user's time zone
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    updated_at: Mapped[datetime]

