"""Tables of alerts: the rules (``alert``) and their trigger history (``alert_trigger``).

One table holds every kind; the columns a kind does not use are NULL. ``next_eligible_at`` is
the cool-down: the conditional UPDATE that fires an alert requires it to be NULL or past, and
``status = 'active'``, so a second evaluation of the same tick (another engine, a replay)
cannot fire it again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.core.types import Money
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)


class Alert(UUIDPrimaryKey, Base):
    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_user_created", "user_id", "created_at", "id"),
                      Index("ix_alert_status_kind", "status", "kind"))

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # price, pnl, risk
    condition: Mapped[str] = mapped_column(String(24))
    symbol: Mapped[str | None] = mapped_column(String(32))
    account_id: Mapped[uuid.UUID | None]  # P&L / risk: one account (None: all of the user's)
    threshold: Mapped[Decimal] = mapped_column(Money)
    direction: Mapped[str | None] = mapped_column(String(8))  # up/down/any; P&L: above/below
    unit: Mapped[str | None] = mapped_column(String(8))  # P&L: absolute / percent
    window_seconds: Mapped[int | None]  # percent_change
    recurring: Mapped[bool] = mapped_column(default=False)
    cooldown_seconds: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(12))
    trigger_count: Mapped[int] = mapped_column(default=0)
    last_triggered_at: Mapped[datetime | None]
    next_eligible_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AlertTrigger(UUIDPrimaryKey, Base):
    """One firing of an alert: when, at what value, and why."""

    __tablename__ = "alert_trigger"
    __table_args__ = (Index("ix_alert_trigger_alert_at", "alert_id", "triggered_at", "id"),)

    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    triggered_at: Mapped[datetime]
    value: Mapped[Decimal] = mapped_column(Money)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
