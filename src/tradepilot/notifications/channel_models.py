"""Tables of the push channels: where a user is reached, Telegram link codes, the attempt log.

``notification_target`` is one destination of a user on one channel: a linked Telegram chat,
a Discord or Slack webhook URL, a Web Push subscription (a user may have several devices).
The destination is SecretBox-encrypted (a webhook URL is a credential: whoever has it can
post), with a SHA-256 of it kept to make a destination unique per channel.
``notification_attempt`` is the delivery log: one row per try on one target, with its outcome.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.core.secrets_box import register_encrypted_column
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)
from tradepilot.notifications import models as _notification_models  # noqa: F401  (notification, the FK target)


class NotificationTarget(UUIDPrimaryKey, Base):
    __tablename__ = "notification_target"
    __table_args__ = (UniqueConstraint("channel", "address_hash"),
                      Index("ix_notification_target_user_channel", "user_id", "channel"))

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(24))
    address_encrypted: Mapped[str] = mapped_column(Text)  # JSON: {"chat_id"} | {"url"} | {"subscription"}
    address_hash: Mapped[str] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(100))
    trading_commands: Mapped[bool] = mapped_column(default=False)  # Telegram: /stop and other changes allowed
    created_at: Mapped[datetime]


register_encrypted_column(NotificationTarget.address_encrypted)  # `tradepilot keys rotate` finds it


class TelegramLinkCode(Base):
    """A one-time code (stored hashed) that links the chat which sends ``/start <code>``."""

    __tablename__ = "telegram_link_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]


class NotificationAttempt(UUIDPrimaryKey, Base):
    """One try to deliver one notification to one target (the delivery log)."""

    __tablename__ = "notification_attempt"
    __table_args__ = (Index("ix_notification_attempt_notification", "notification_id", "created_at"),)

    notification_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notification.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(24))
    target_id: Mapped[uuid.UUID | None]  # no FK: the log outlives an unlinked target
    job_id: Mapped[uuid.UUID | None]
    attempt: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(16))  # sent | failed | rate_limited | refused | dead
    status_code: Mapped[int | None]
    detail: Mapped[str | None] = mapped_column(String(300))
    retry_after_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
