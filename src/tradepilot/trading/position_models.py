"""A position's server-side exits: its stop-loss and take-profit (docs/orders.md, "Exits").

An exit *is* an order — a reduce-only conditional sell that the matching owner arms and re-arms
after a restart like any other. ``PositionExit`` only remembers which order currently plays
which role for which position (one stop-loss and one take-profit at most), so that the
position can show them and so that they can follow the position when it changes: resized to
its quantity, or canceled once it is flat (``position_exits``).

A link whose order has ended (filled, canceled by the user through ``DELETE /orders/{id}``…)
means "not set"; such links are removed the next time the position changes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.core.types import Money
from tradepilot.trading import order_models as _order_models  # noqa: F401  (the FK targets)


class ExitKind:
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"

    ALL = (STOP_LOSS, TAKE_PROFIT)


class PositionExit(UUIDPrimaryKey, Base):
    __tablename__ = "trading_position_exit"
    __table_args__ = (UniqueConstraint("position_id", "kind"),)

    position_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_position.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # stop_loss | take_profit
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_order.id", ondelete="CASCADE"), unique=True)
    order_type: Mapped[str] = mapped_column(String(24))  # stop | take_profit | limit
    trigger_price: Mapped[Decimal] = mapped_column(Money)  # stop price, or the limit price of a limit exit
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
