"""What the engine tells its caller: every call returns these, in the order they happened.

The caller persists one call's events in one transaction (order rows, fills, ledger entries,
outbox). Events carry the figures the caller needs to write without reading the engine back:
an :class:`OrderUpdated` follows every fill with the order's cumulative state.

They are plain slotted dataclasses, not frozen ones: a frozen dataclass costs about 1 µs more
to build, several of them per fill, on the engine's hot path — and the engine never reads an
event back, so a caller that changed one could not corrupt it. Treat them as values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tradepilot.trading.engine.orders import Liquidity, OrderStatus, Side


@dataclass(slots=True)
class OrderAccepted:
    """The order works (``new``) or, a bracket exit, waits for its entry (``pending_new``)."""

    order_id: str
    account_id: str
    status: OrderStatus
    seq: int
    ts: datetime


@dataclass(slots=True)
class OrderUpdated:
    """State after a fill or an activation; ``previous_status`` tells whether the status changed."""

    order_id: str
    account_id: str
    status: OrderStatus
    previous_status: OrderStatus
    filled_quantity: Decimal
    remaining_quantity: Decimal | None
    filled_notional: Decimal
    fees: Decimal
    ts: datetime


@dataclass(slots=True)
class OrderModified:
    order_id: str
    account_id: str
    revision: int
    price: Decimal | None
    quantity: Decimal | None
    stop_price: Decimal | None
    lost_priority: bool  # the order went to the back of its queue
    ts: datetime


@dataclass(slots=True)
class Fill:
    """One execution. ``fee`` is in ``fee_currency`` (the symbol's quote currency)."""

    order_id: str
    account_id: str
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: Liquidity
    trade_id: str  # the engine's own, "<order id>-<n>": unique and stable across restarts
    market_trade_id: str | None  # the market trade that filled a maker order; None for takers
    ts: datetime


@dataclass(slots=True)
class Triggered:
    """A conditional order fired: ``trigger_price`` is its level, ``trade_price`` the trade's."""

    order_id: str
    account_id: str
    trigger_price: Decimal
    trade_price: Decimal
    market_trade_id: str
    ts: datetime


@dataclass(slots=True)
class StopMoved:
    """A trailing stop's water mark moved with a trade, and its trigger level with it."""

    order_id: str
    account_id: str
    water_mark: Decimal
    stop_price: Decimal
    ts: datetime


@dataclass(slots=True)
class OrderCanceled:
    order_id: str
    account_id: str
    reason: str  # stable snake_case: canceled_by_user, ioc_remainder, insufficient_depth…
    filled_quantity: Decimal
    ts: datetime


@dataclass(slots=True)
class OrderExpired:
    order_id: str
    account_id: str
    filled_quantity: Decimal
    ts: datetime


@dataclass(slots=True)
class OrderRejected:
    """Never accepted: nothing else happened to this order."""

    order_id: str
    account_id: str
    code: str
    detail: str
    ts: datetime


@dataclass(slots=True)
class ModifyRejected:
    """A modify was refused; the order is unchanged."""

    order_id: str
    account_id: str
    code: str
    detail: str
    ts: datetime


EngineEvent = (OrderAccepted | OrderUpdated | OrderModified | Fill | Triggered | StopMoved
               | OrderCanceled | OrderExpired | OrderRejected | ModifyRejected)
