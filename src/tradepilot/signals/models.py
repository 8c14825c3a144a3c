"""Tables of signals: the signals themselves and each user's inbound webhook.

A signal keeps what its follower learnt (``triggered_at`` / ``trigger_price``, then the stop or
target ``outcome`` and the ``horizon_return``) on its own row: the performance figures are read
from these columns, and a re-evaluation of the same bars writes the same values.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.core.types import Money
from tradepilot.identity import models as _identity_models  # noqa: F401  (user_account, the FK target)


class Signal(UUIDPrimaryKey, Base):
    __tablename__ = "signal"
    __table_args__ = (Index("ix_signal_user_created", "user_id", "created_at", "id"),
                      Index("ix_signal_status", "status"))

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    strength: Mapped[float] = mapped_column(Float)  # a conviction 0..1, not money
    entry: Mapped[Decimal | None] = mapped_column(Money)  # None: at the market (the next bar's open)
    stop_loss: Mapped[Decimal | None] = mapped_column(Money)
    take_profit: Mapped[Decimal | None] = mapped_column(Money)
    timeframe: Mapped[str] = mapped_column(String(4))
    horizon: Mapped[int]  # bars of ``timeframe`` after the entry
    source: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str] = mapped_column(String(1000))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # model scores, the strategy's rule...
    status: Mapped[str] = mapped_column(String(12))
    expires_at: Mapped[datetime]
    triggered_at: Mapped[datetime | None]
    trigger_price: Mapped[Decimal | None] = mapped_column(Money)
    outcome: Mapped[str | None] = mapped_column(String(12))
    outcome_at: Mapped[datetime | None]
    exit_price: Mapped[Decimal | None] = mapped_column(Money)
    horizon_return: Mapped[Decimal | None] = mapped_column(Money)  # side-adjusted, 0.01 = +1 %
    evaluated_at: Mapped[datetime | None]  # when the horizon's return was measured: nothing more to follow
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SignalWebhook(UUIDPrimaryKey, Base):
    """A user's inbound webhook: the public ``key`` in its URL and the HMAC of its secret."""

    __tablename__ = "signal_webhook"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), unique=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    rotated_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
