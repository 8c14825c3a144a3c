"""Orders, their events, fills and positions of the paper exchange (docs/orders.md).

An ``Order`` row is the order as the user asked for it plus everything the matching engine
needs to re-arm it after a restart (``seq``, ``fill_count``, ``triggered``, ``water_mark``,
``expires_at``) and what is still locked for it (``reserved`` of ``reserved_asset``, exact).
``OrderEvent`` rows are the order's history (seq 1, 2, 3… per order); ``Fill`` rows its
executions (``trade_id`` unique: ``<order id>-<n>``, stable across restarts); ``Position``
rows the account's holding per symbol by the average-cost method.

Money columns are ``Money`` (exact); quantities are signed where a direction matters
(``Position.quantity``), so margin accounts can come later without migrating history.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tradepilot.core.db import Base, UUIDPrimaryKey
from tradepilot.core.types import Money
from tradepilot.trading import models as _trading_models  # noqa: F401  (trading_account, the FK target)


class OrderSource:
    PLATFORM = "platform"
    EXTERNAL = "external"


class OrderStatus:
    """FIX-like statuses (the engine's ``OrderStatus`` values)."""

    PENDING_NEW = "pending_new"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"

    OPEN = frozenset({PENDING_NEW, NEW, PARTIALLY_FILLED})
    FINAL = frozenset({FILLED, CANCELED, EXPIRED, REJECTED})
    ALL = OPEN | FINAL


class Order(UUIDPrimaryKey, Base):
    __tablename__ = "trading_order"
    __table_args__ = (UniqueConstraint("account_id", "client_order_id"),)  # unique per account, forever

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    client_order_id: Mapped[str] = mapped_column(String(64))
    venue: Mapped[str] = mapped_column(String(64))  # the market-data venue whose trades fill it
    symbol: Mapped[str] = mapped_column(String(32))
    base_asset: Mapped[str] = mapped_column(String(16))
    quote_asset: Mapped[str] = mapped_column(String(16))
    side: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(24))
    time_in_force: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal | None] = mapped_column(Money)  # base; None when sized by quote_quantity
    quote_quantity: Mapped[Decimal | None] = mapped_column(Money)
    price: Mapped[Decimal | None] = mapped_column(Money)  # limit price
    stop_price: Mapped[Decimal | None] = mapped_column(Money)  # trigger level (a trailing stop's current one)
    trail_amount: Mapped[Decimal | None] = mapped_column(Money)
    trail_percent: Mapped[Decimal | None] = mapped_column(Money)
    post_only: Mapped[bool] = mapped_column(default=False)
    reduce_only: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(20))
    filled_quantity: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    filled_notional: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))  # Σ price × quantity, exact
    average_fill_price: Mapped[Decimal | None] = mapped_column(Money)
    fees: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    fee_asset: Mapped[str] = mapped_column(String(16))
    reserved: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))  # still locked for this order
    reserved_asset: Mapped[str] = mapped_column(String(16))
    revision: Mapped[int] = mapped_column(default=0)  # +1 per modification by the user
    reject_code: Mapped[str | None] = mapped_column(String(48))
    reject_reason: Mapped[str | None] = mapped_column(String(300))
    cancel_reason: Mapped[str | None] = mapped_column(String(48))
    # a bracket (entry + take-profit / stop-loss exits) or an OCO pair: its orders share the id
    group_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    group_kind: Mapped[str | None] = mapped_column(String(8))  # bracket | oco
    group_role: Mapped[str | None] = mapped_column(String(16))  # entry | take_profit | stop_loss
    # the matching engine's state, so a restart re-arms the order exactly
    seq: Mapped[int] = mapped_column(BigInteger, default=0)  # time priority
    fill_count: Mapped[int] = mapped_column(default=0)  # trade ids are "<id>-<n>"
    triggered: Mapped[bool] = mapped_column(default=False)
    water_mark: Mapped[Decimal | None] = mapped_column(Money)  # trailing stops
    accepted_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # day orders: the next 00:00 UTC
    event_seq: Mapped[int] = mapped_column(default=0)  # the last OrderEvent's seq
    # live accounts: the exchange's own id, once it told us (the client id sent is tp-<id hex>)
    exchange_order_id: Mapped[str | None] = mapped_column(String(64))
    # who placed it: "platform" (through TradePilot), or "external" (found on a live account's
    # exchange by reconciliation — by hand, by another program): it moves balances and positions
    # but the platform never cancels or closes it
    source: Mapped[str] = mapped_column(String(16), default="platform", server_default="platform")
    # placed by a live run of a strategy (strategies/runs): analytics group by these; None = by hand / API
    strategy_id: Mapped[uuid.UUID | None]
    strategy_run_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]

    @property
    def is_open(self) -> bool:
        return self.status in OrderStatus.OPEN


Index("ix_trading_order_user_created", Order.user_id, Order.created_at)
Index("ix_trading_order_account_status", Order.account_id, Order.status)
Index("ix_trading_order_venue_status", Order.venue, Order.status)
Index("ix_trading_order_user_closed", Order.user_id, Order.closed_at)  # GET /history


class OrderEvent(UUIDPrimaryKey, Base):
    """One step of an order's life: received, accepted, fill, triggered, canceled…"""

    __tablename__ = "trading_order_event"
    __table_args__ = (UniqueConstraint("order_id", "seq"),)

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_order.id", ondelete="CASCADE"))
    seq: Mapped[int]
    type: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(20))  # the order's status after the event
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class Fill(UUIDPrimaryKey, Base):
    """One execution of an order."""

    __tablename__ = "trading_fill"

    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_order.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    price: Mapped[Decimal] = mapped_column(Money)
    quantity: Mapped[Decimal] = mapped_column(Money)
    quote_quantity: Mapped[Decimal] = mapped_column(Money)  # price × quantity
    fee: Mapped[Decimal] = mapped_column(Money)
    fee_asset: Mapped[str] = mapped_column(String(16))
    liquidity: Mapped[str] = mapped_column(String(8))  # maker | taker
    trade_id: Mapped[str] = mapped_column(String(80), unique=True)
    market_trade_id: Mapped[str | None] = mapped_column(String(80))  # the market trade that filled a maker
    # gross P&L this fill realised on its position (average cost, quote asset; 0 for a buy),
    # written with the position update: the P&L of any period is a sum of fills, in Python
    realised_pnl: Mapped[Decimal | None] = mapped_column(Money)
    source: Mapped[str] = mapped_column(String(16), default="platform", server_default="platform")  # its order's
    created_at: Mapped[datetime]


Index("ix_trading_fill_user_created", Fill.user_id, Fill.created_at)
Index("ix_trading_fill_account_created", Fill.account_id, Fill.created_at)


class Position(UUIDPrimaryKey, Base):
    """An account's holding of one symbol's base asset from its trades, at average cost."""

    __tablename__ = "trading_position"
    __table_args__ = (UniqueConstraint("account_id", "symbol"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("trading_account.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    base_asset: Mapped[str] = mapped_column(String(16))
    quote_asset: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))  # signed: + long
    average_entry_price: Mapped[Decimal | None] = mapped_column(Money)  # None when flat
    # the open quantity's cost (quote asset, unsigned), summed exactly: average = cost ÷ quantity,
    # rounded once; None on rows older than the column (quantity × average stands in)
    cost_basis: Mapped[Decimal | None] = mapped_column(Money)
    realised_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))  # gross, in the quote asset
    fees: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))  # paid on this symbol, quote asset
    opened_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
